-- rule access-log-after-1-year
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN false THEN %(param_1)s ELSE %(param_2)s END), %(coalesce_1)s) AS kept_unless, coalesce(sum(CASE WHEN false THEN %(param_3)s ELSE %(param_4)s END), %(coalesce_2)s) AS kept_holds FROM access_log WHERE access_log.logged_at < %(cutoff)s;
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM access_log;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM access_log WHERE access_log.logged_at < %(cutoff)s LIMIT %(guard_bound)s) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM access_log LIMIT %(table_bound)s) AS upto;
-- highest key (bounds the windows of keys)
SELECT max(access_log.id) AS max_1 FROM access_log;
-- select and lock the first batch
SELECT access_log.id FROM access_log WHERE access_log.logged_at < %(cutoff)s ORDER BY access_log.id LIMIT %(batch_limit)s FOR UPDATE;
-- select and lock the next batch within a window of keys
SELECT access_log.id FROM access_log WHERE access_log.logged_at < %(cutoff)s AND access_log.id > %(last_0)s AND access_log.id <= %(upto)s ORDER BY access_log.id LIMIT %(batch_limit)s FOR UPDATE;
-- select and lock the next batch
SELECT access_log.id FROM access_log WHERE access_log.logged_at < %(cutoff)s AND access_log.id > %(last_0)s ORDER BY access_log.id LIMIT %(batch_limit)s FOR UPDATE;
-- delete the batch's rows in access_log
DELETE FROM access_log WHERE access_log.id IN (<the integers of :keys, inline>);
