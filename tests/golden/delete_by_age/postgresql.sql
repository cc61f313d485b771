-- rule access-log-after-1-year
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN false THEN %(param_1)s::INTEGER ELSE %(param_2)s::INTEGER END), %(coalesce_1)s::INTEGER) AS kept_unless, coalesce(sum(CASE WHEN false THEN %(param_3)s::INTEGER ELSE %(param_4)s::INTEGER END), %(coalesce_2)s::INTEGER) AS kept_holds FROM access_log WHERE access_log.logged_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE;
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM access_log;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM access_log WHERE access_log.logged_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE LIMIT %(guard_bound)s::BIGINT) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM access_log LIMIT %(table_bound)s::BIGINT) AS upto;
-- select and lock the first batch
SELECT access_log.id FROM access_log WHERE access_log.logged_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE ORDER BY access_log.id LIMIT %(batch_limit)s::INTEGER FOR UPDATE;
-- select and lock the next batch
SELECT access_log.id FROM access_log WHERE access_log.logged_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE AND access_log.id > %(last_0)s::INTEGER ORDER BY access_log.id LIMIT %(batch_limit)s::INTEGER FOR UPDATE;
-- delete the batch's rows in access_log
DELETE FROM access_log WHERE access_log.id = ANY (%(keys)s::INTEGER[]);
