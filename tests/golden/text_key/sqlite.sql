-- rule sessions-after-7-days
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN 0 THEN ? ELSE ? END), ?) AS kept_unless, coalesce(sum(CASE WHEN 0 THEN ? ELSE ? END), ?) AS kept_holds FROM sessions WHERE sessions.created_at < ?;
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM sessions;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM sessions WHERE sessions.created_at < ? LIMIT ? OFFSET ?) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM sessions LIMIT ? OFFSET ?) AS upto;
-- select and lock the first batch
SELECT sessions.token FROM sessions WHERE sessions.created_at < ? ORDER BY sessions.token LIMIT ? OFFSET ?;
-- select and lock the next batch
SELECT sessions.token FROM sessions WHERE sessions.created_at < ? AND sessions.token > ? ORDER BY sessions.token LIMIT ? OFFSET ?;
-- delete the batch's rows in sessions
DELETE FROM sessions WHERE sessions.token IN (SELECT anon_1.value FROM json_each(?) AS anon_1);
