-- rule closed-accounts-after-1-year
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN 0 THEN ? ELSE ? END), ?) AS kept_unless, coalesce(sum(CASE WHEN 0 THEN ? ELSE ? END), ?) AS kept_holds FROM accounts WHERE accounts.closed_at < ?;
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM accounts;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM accounts WHERE accounts.closed_at < ? LIMIT ? OFFSET ?) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM accounts LIMIT ? OFFSET ?) AS upto;
-- count dependents in tickets
SELECT count(*) AS count_1 FROM tickets WHERE tickets.account_id IN (SELECT accounts.id FROM accounts WHERE accounts.closed_at < ?);
-- count dependents in access_log
SELECT count(*) AS count_1 FROM access_log WHERE access_log.account_id IN (SELECT accounts.id FROM accounts WHERE accounts.closed_at < ?);
-- select and lock the first batch
SELECT accounts.id FROM accounts WHERE accounts.closed_at < ? ORDER BY accounts.id LIMIT ? OFFSET ?;
-- select and lock the next batch
SELECT accounts.id FROM accounts WHERE accounts.closed_at < ? AND accounts.id > ? ORDER BY accounts.id LIMIT ? OFFSET ?;
-- detach dependents in tickets
UPDATE tickets SET account_id=NULL WHERE tickets.account_id IN (SELECT anon_1.value FROM json_each(?) AS anon_1);
-- delete dependents in access_log
DELETE FROM access_log WHERE access_log.account_id IN (SELECT anon_1.value FROM json_each(?) AS anon_1);
-- delete the batch's rows in accounts
DELETE FROM accounts WHERE accounts.id IN (SELECT anon_1.value FROM json_each(?) AS anon_1);
