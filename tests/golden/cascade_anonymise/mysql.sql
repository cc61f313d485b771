-- rule closed-accounts-after-30-days
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN false THEN %(param_1)s ELSE %(param_2)s END), %(coalesce_1)s) AS kept_unless, coalesce(sum(CASE WHEN false THEN %(param_3)s ELSE %(param_4)s END), %(coalesce_2)s) AS kept_holds FROM accounts WHERE accounts.closed_at < %(cutoff)s AND accounts.anonymised_at IS NULL;
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM accounts;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM accounts WHERE accounts.closed_at < %(cutoff)s AND accounts.anonymised_at IS NULL LIMIT %(guard_bound)s) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM accounts LIMIT %(table_bound)s) AS upto;
-- count dependents in access_log
SELECT count(*) AS count_1 FROM access_log WHERE access_log.account_id IN (SELECT accounts.id FROM accounts WHERE accounts.closed_at < %(cutoff)s AND accounts.anonymised_at IS NULL);
-- highest key (bounds the windows of keys)
SELECT max(accounts.id) AS max_1 FROM accounts;
-- select and lock the first batch
SELECT accounts.id FROM accounts WHERE accounts.closed_at < %(cutoff)s AND accounts.anonymised_at IS NULL ORDER BY accounts.id LIMIT %(batch_limit)s FOR UPDATE;
-- select and lock the next batch within a window of keys
SELECT accounts.id FROM accounts WHERE accounts.closed_at < %(cutoff)s AND accounts.anonymised_at IS NULL AND accounts.id > %(last_0)s AND accounts.id <= %(upto)s ORDER BY accounts.id LIMIT %(batch_limit)s FOR UPDATE;
-- select and lock the next batch
SELECT accounts.id FROM accounts WHERE accounts.closed_at < %(cutoff)s AND accounts.anonymised_at IS NULL AND accounts.id > %(last_0)s ORDER BY accounts.id LIMIT %(batch_limit)s FOR UPDATE;
-- anonymise dependents in access_log
UPDATE access_log SET ip_address=CASE WHEN (CONVERT(access_log.ip_address USING utf8mb4) REGEXP %(param_1)s) THEN concat(substring_index(CONVERT(access_log.ip_address USING utf8mb4), %(substring_index_1)s, %(substring_index_2)s), %(concat_1)s) WHEN (CONVERT(access_log.ip_address USING utf8mb4) REGEXP %(param_2)s AND inet6_aton(CONVERT(access_log.ip_address USING utf8mb4)) IS NOT NULL) THEN inet6_ntoa(concat(substring(inet6_aton(CONVERT(access_log.ip_address USING utf8mb4)), %(substring_1)s, %(substring_2)s), unhex(%(unhex_1)s))) ELSE CONVERT(access_log.ip_address USING utf8mb4) END, user_agent=%(access_log_set_user_agent_redacted)s WHERE access_log.account_id IN (<the integers of :parent_values, inline>);
-- anonymise the batch's rows in accounts
UPDATE accounts SET email=NULL, anonymised_at=%(mark_time)s WHERE accounts.id IN (<the integers of :keys, inline>);
