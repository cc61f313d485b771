-- rule closed-accounts-after-1-year
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN false THEN %(param_1)s ELSE %(param_2)s END), %(coalesce_1)s) AS kept_unless, coalesce(sum(CASE WHEN false THEN %(param_3)s ELSE %(param_4)s END), %(coalesce_2)s) AS kept_holds FROM accounts WHERE accounts.closed_at < %(cutoff)s;
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM accounts;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM accounts WHERE accounts.closed_at < %(cutoff)s LIMIT %(guard_bound)s) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM accounts LIMIT %(table_bound)s) AS upto;
-- count dependents in tickets
SELECT count(*) AS count_1 FROM tickets WHERE tickets.account_id IN (SELECT accounts.id FROM accounts WHERE accounts.closed_at < %(cutoff)s);
-- count dependents in access_log
SELECT count(*) AS count_1 FROM access_log WHERE access_log.account_id IN (SELECT accounts.id FROM accounts WHERE accounts.closed_at < %(cutoff)s);
-- highest key (bounds the windows of keys)
SELECT max(accounts.id) AS max_1 FROM accounts;
-- select and lock the first batch
SELECT accounts.id FROM accounts WHERE accounts.closed_at < %(cutoff)s ORDER BY accounts.id LIMIT %(batch_limit)s FOR UPDATE;
-- select and lock the next batch within a window of keys
SELECT accounts.id FROM accounts WHERE accounts.closed_at < %(cutoff)s AND accounts.id > %(last_0)s AND accounts.id <= %(upto)s ORDER BY accounts.id LIMIT %(batch_limit)s FOR UPDATE;
-- select and lock the next batch
SELECT accounts.id FROM accounts WHERE accounts.closed_at < %(cutoff)s AND accounts.id > %(last_0)s ORDER BY accounts.id LIMIT %(batch_limit)s FOR UPDATE;
-- detach dependents in tickets
UPDATE tickets SET account_id=NULL WHERE tickets.account_id IN (<the integers of :parent_values, inline>);
-- delete dependents in access_log
DELETE FROM access_log WHERE access_log.account_id IN (<the integers of :parent_values, inline>);
-- delete the batch's rows in accounts
DELETE FROM accounts WHERE accounts.id IN (<the integers of :keys, inline>);
