-- rule access-log-after-1-year
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN false THEN %(param_1)s::INTEGER ELSE %(param_2)s::INTEGER END), %(coalesce_1)s::INTEGER) AS kept_unless, coalesce(sum(CASE WHEN false THEN %(param_3)s::INTEGER ELSE %(param_4)s::INTEGER END), %(coalesce_2)s::INTEGER) AS kept_holds FROM access_log WHERE access_log.logged_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE;
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM access_log;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM access_log WHERE access_log.logged_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE LIMIT %(guard_bound)s::BIGINT) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM access_log LIMIT %(table_bound)s::BIGINT) AS upto;
-- the first batch in one statement: select and lock its rows, delete them
WITH retention_chosen AS (SELECT access_log.id AS id FROM access_log WHERE access_log.logged_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE ORDER BY access_log.id LIMIT %(batch_limit)s::INTEGER FOR UPDATE), retention_applied AS (DELETE FROM access_log WHERE access_log.id = ANY (CAST((SELECT array_agg(retention_chosen.id) AS array_agg_1 FROM retention_chosen) AS INTEGER[])) RETURNING 1) SELECT retention_chosen.id, (SELECT count(*) AS count_1 FROM retention_applied) AS applied FROM retention_chosen ORDER BY retention_chosen.id;
-- the next batch in one statement: select and lock its rows, delete them
WITH retention_chosen AS (SELECT access_log.id AS id FROM access_log WHERE access_log.logged_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE AND access_log.id > %(last_0)s::INTEGER ORDER BY access_log.id LIMIT %(batch_limit)s::INTEGER FOR UPDATE), retention_applied AS (DELETE FROM access_log WHERE access_log.id = ANY (CAST((SELECT array_agg(retention_chosen.id) AS array_agg_1 FROM retention_chosen) AS INTEGER[])) RETURNING 1) SELECT retention_chosen.id, (SELECT count(*) AS count_1 FROM retention_applied) AS applied FROM retention_chosen ORDER BY retention_chosen.id;
