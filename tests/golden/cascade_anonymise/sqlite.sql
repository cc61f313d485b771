-- rule closed-accounts-after-30-days
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN 0 THEN ? ELSE ? END), ?) AS kept_unless, coalesce(sum(CASE WHEN 0 THEN ? ELSE ? END), ?) AS kept_holds FROM accounts WHERE accounts.closed_at < ? AND accounts.anonymised_at IS NULL;
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM accounts;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM accounts WHERE accounts.closed_at < ? AND accounts.anonymised_at IS NULL LIMIT ? OFFSET ?) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM accounts LIMIT ? OFFSET ?) AS upto;
-- count dependents in access_log
SELECT count(*) AS count_1 FROM access_log WHERE access_log.account_id IN (SELECT accounts.id FROM accounts WHERE accounts.closed_at < ? AND accounts.anonymised_at IS NULL);
-- select and lock the first batch
SELECT accounts.id FROM accounts WHERE accounts.closed_at < ? AND accounts.anonymised_at IS NULL ORDER BY accounts.id LIMIT ? OFFSET ?;
-- select and lock the next batch
SELECT accounts.id FROM accounts WHERE accounts.closed_at < ? AND accounts.anonymised_at IS NULL AND accounts.id > ? ORDER BY accounts.id LIMIT ? OFFSET ?;
-- anonymise dependents in access_log
UPDATE access_log SET ip_address=retention_truncate_ip(access_log.ip_address), user_agent=? WHERE access_log.account_id IN (SELECT anon_1.value FROM json_each(?) AS anon_1);
-- anonymise the batch's rows in accounts
UPDATE accounts SET email=NULL, anonymised_at=? WHERE accounts.id IN (SELECT anon_1.value FROM json_each(?) AS anon_1);
