-- rule order-lines-after-2-years
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN 0 THEN ? ELSE ? END), ?) AS kept_unless, coalesce(sum(CASE WHEN 0 THEN ? ELSE ? END), ?) AS kept_holds FROM order_lines WHERE order_lines.created_epoch < ? AND NOT (order_lines.address IS NOT NULL AND order_lines.address = ?);
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM order_lines;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM order_lines WHERE order_lines.created_epoch < ? AND NOT (order_lines.address IS NOT NULL AND order_lines.address = ?) LIMIT ? OFFSET ?) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM order_lines LIMIT ? OFFSET ?) AS upto;
-- select and lock the first batch
SELECT order_lines.order_id, order_lines.line_no FROM order_lines WHERE order_lines.created_epoch < ? AND NOT (order_lines.address IS NOT NULL AND order_lines.address = ?) ORDER BY order_lines.order_id, order_lines.line_no LIMIT ? OFFSET ?;
-- select and lock the next batch
SELECT order_lines.order_id, order_lines.line_no FROM order_lines WHERE order_lines.created_epoch < ? AND NOT (order_lines.address IS NOT NULL AND order_lines.address = ?) AND order_lines.order_id >= ? AND (order_lines.order_id > ? OR order_lines.order_id = ? AND order_lines.line_no > ?) ORDER BY order_lines.order_id, order_lines.line_no LIMIT ? OFFSET ?;
-- anonymise the batch's rows in order_lines
UPDATE order_lines SET address=? WHERE (order_lines.order_id, order_lines.line_no) IN (<one placeholder per item of :keys>);
