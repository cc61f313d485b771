-- rule sessions-after-7-days
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN false THEN %(param_1)s::INTEGER ELSE %(param_2)s::INTEGER END), %(coalesce_1)s::INTEGER) AS kept_unless, coalesce(sum(CASE WHEN false THEN %(param_3)s::INTEGER ELSE %(param_4)s::INTEGER END), %(coalesce_2)s::INTEGER) AS kept_holds FROM sessions WHERE sessions.created_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE;
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM sessions;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM sessions WHERE sessions.created_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE LIMIT %(guard_bound)s::BIGINT) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM sessions LIMIT %(table_bound)s::BIGINT) AS upto;
-- the first batch in one statement: select and lock its rows, delete them
WITH retention_chosen AS (SELECT sessions.token AS token FROM sessions WHERE sessions.created_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE ORDER BY sessions.token LIMIT %(batch_limit)s::INTEGER FOR UPDATE), retention_applied AS (DELETE FROM sessions WHERE sessions.token = ANY (CAST((SELECT array_agg(retention_chosen.token) AS array_agg_1 FROM retention_chosen) AS VARCHAR(64)[])) RETURNING 1) SELECT retention_chosen.token, (SELECT count(*) AS count_1 FROM retention_applied) AS applied FROM retention_chosen ORDER BY retention_chosen.token;
-- the next batch in one statement: select and lock its rows, delete them
WITH retention_chosen AS (SELECT sessions.token AS token FROM sessions WHERE sessions.created_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE AND sessions.token > %(last_0)s::VARCHAR ORDER BY sessions.token LIMIT %(batch_limit)s::INTEGER FOR UPDATE), retention_applied AS (DELETE FROM sessions WHERE sessions.token = ANY (CAST((SELECT array_agg(retention_chosen.token) AS array_agg_1 FROM retention_chosen) AS VARCHAR(64)[])) RETURNING 1) SELECT retention_chosen.token, (SELECT count(*) AS count_1 FROM retention_applied) AS applied FROM retention_chosen ORDER BY retention_chosen.token;
