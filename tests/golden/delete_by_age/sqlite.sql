-- rule access-log-after-1-year
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN 0 THEN ? ELSE ? END), ?) AS kept_unless, coalesce(sum(CASE WHEN 0 THEN ? ELSE ? END), ?) AS kept_holds FROM access_log WHERE access_log.logged_at < ?;
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM access_log;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM access_log WHERE access_log.logged_at < ? LIMIT ? OFFSET ?) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM access_log LIMIT ? OFFSET ?) AS upto;
-- select and lock the first batch
SELECT access_log.id FROM access_log WHERE access_log.logged_at < ? ORDER BY access_log.id LIMIT ? OFFSET ?;
-- select and lock the next batch
SELECT access_log.id FROM access_log WHERE access_log.logged_at < ? AND access_log.id > ? ORDER BY access_log.id LIMIT ? OFFSET ?;
-- delete the batch's rows in access_log
DELETE FROM access_log WHERE access_log.id IN (SELECT anon_1.value FROM json_each(?) AS anon_1);
