-- rule closed-accounts-after-30-days
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN false THEN %(param_1)s::INTEGER ELSE %(param_2)s::INTEGER END), %(coalesce_1)s::INTEGER) AS kept_unless, coalesce(sum(CASE WHEN false THEN %(param_3)s::INTEGER ELSE %(param_4)s::INTEGER END), %(coalesce_2)s::INTEGER) AS kept_holds FROM accounts WHERE accounts.closed_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE AND accounts.anonymised_at IS NULL;
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM accounts;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM accounts WHERE accounts.closed_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE AND accounts.anonymised_at IS NULL LIMIT %(guard_bound)s::BIGINT) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM accounts LIMIT %(table_bound)s::BIGINT) AS upto;
-- count dependents in access_log
SELECT count(*) AS count_1 FROM access_log WHERE access_log.account_id IN (SELECT accounts.id FROM accounts WHERE accounts.closed_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE AND accounts.anonymised_at IS NULL);
-- select and lock the first batch
SELECT accounts.id FROM accounts WHERE accounts.closed_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE AND accounts.anonymised_at IS NULL ORDER BY accounts.id LIMIT %(batch_limit)s::INTEGER FOR UPDATE;
-- select and lock the next batch
SELECT accounts.id FROM accounts WHERE accounts.closed_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE AND accounts.anonymised_at IS NULL AND accounts.id > %(last_0)s::INTEGER ORDER BY accounts.id LIMIT %(batch_limit)s::INTEGER FOR UPDATE;
-- anonymise dependents in access_log
UPDATE access_log SET ip_address=CASE WHEN (access_log.ip_address ~ %(ip_address_1)s::VARCHAR) THEN host(network(set_masklen(CAST(access_log.ip_address AS INET), %(set_masklen_1)s::INTEGER))) WHEN (access_log.ip_address ~ %(ip_address_2)s::VARCHAR) THEN host(network(set_masklen(CAST(access_log.ip_address AS INET), %(set_masklen_2)s::INTEGER))) ELSE access_log.ip_address END, user_agent=%(access_log_set_user_agent_redacted)s::VARCHAR WHERE access_log.account_id = ANY (%(parent_values)s::INTEGER[]);
-- anonymise the batch's rows in accounts
UPDATE accounts SET email=NULL, anonymised_at=%(mark_time)s::TIMESTAMP WITHOUT TIME ZONE WHERE accounts.id = ANY (%(keys)s::INTEGER[]);
