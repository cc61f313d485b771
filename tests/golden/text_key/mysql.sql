-- rule sessions-after-7-days
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN false THEN %(param_1)s ELSE %(param_2)s END), %(coalesce_1)s) AS kept_unless, coalesce(sum(CASE WHEN false THEN %(param_3)s ELSE %(param_4)s END), %(coalesce_2)s) AS kept_holds FROM sessions WHERE sessions.created_at < %(cutoff)s;
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM sessions;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM sessions WHERE sessions.created_at < %(cutoff)s LIMIT %(guard_bound)s) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM sessions LIMIT %(table_bound)s) AS upto;
-- select and lock the first batch
SELECT sessions.token FROM sessions WHERE sessions.created_at < %(cutoff)s ORDER BY sessions.token LIMIT %(batch_limit)s FOR UPDATE;
-- select and lock the next batch
SELECT sessions.token FROM sessions WHERE sessions.created_at < %(cutoff)s AND sessions.token > %(last_0)s ORDER BY sessions.token LIMIT %(batch_limit)s FOR UPDATE;
-- delete the batch's rows in sessions
DELETE FROM sessions WHERE sessions.token IN (<one placeholder per item of :keys>);
