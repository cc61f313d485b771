-- rule order-lines-after-2-years
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN false THEN %(param_1)s ELSE %(param_2)s END), %(coalesce_1)s) AS kept_unless, coalesce(sum(CASE WHEN false THEN %(param_3)s ELSE %(param_4)s END), %(coalesce_2)s) AS kept_holds FROM order_lines WHERE order_lines.created_epoch < %(cutoff)s AND NOT (order_lines.address IS NOT NULL AND CAST(order_lines.address AS BINARY) = CAST(%(set_address_redacted)s AS BINARY));
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM order_lines;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM order_lines WHERE order_lines.created_epoch < %(cutoff)s AND NOT (order_lines.address IS NOT NULL AND CAST(order_lines.address AS BINARY) = CAST(%(set_address_redacted)s AS BINARY)) LIMIT %(guard_bound)s) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM order_lines LIMIT %(table_bound)s) AS upto;
-- select and lock the first batch
SELECT order_lines.order_id, order_lines.line_no FROM order_lines WHERE order_lines.created_epoch < %(cutoff)s AND NOT (order_lines.address IS NOT NULL AND CAST(order_lines.address AS BINARY) = CAST(%(set_address_redacted)s AS BINARY)) ORDER BY order_lines.order_id, order_lines.line_no LIMIT %(batch_limit)s FOR UPDATE;
-- select and lock the next batch
SELECT order_lines.order_id, order_lines.line_no FROM order_lines WHERE order_lines.created_epoch < %(cutoff)s AND NOT (order_lines.address IS NOT NULL AND CAST(order_lines.address AS BINARY) = CAST(%(set_address_redacted)s AS BINARY)) AND order_lines.order_id >= %(last_0)s AND (order_lines.order_id > %(last_0)s OR order_lines.order_id = %(last_0)s AND order_lines.line_no > %(last_1)s) ORDER BY order_lines.order_id, order_lines.line_no LIMIT %(batch_limit)s FOR UPDATE;
-- anonymise the batch's rows in order_lines
UPDATE order_lines SET address=%(set_address_redacted)s WHERE (order_lines.order_id, order_lines.line_no) IN (<one placeholder per item of :keys>);
