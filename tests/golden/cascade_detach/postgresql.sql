-- rule closed-accounts-after-1-year
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN false THEN %(param_1)s::INTEGER ELSE %(param_2)s::INTEGER END), %(coalesce_1)s::INTEGER) AS kept_unless, coalesce(sum(CASE WHEN false THEN %(param_3)s::INTEGER ELSE %(param_4)s::INTEGER END), %(coalesce_2)s::INTEGER) AS kept_holds FROM accounts WHERE accounts.closed_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE;
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM accounts;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM accounts WHERE accounts.closed_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE LIMIT %(guard_bound)s::BIGINT) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM accounts LIMIT %(table_bound)s::BIGINT) AS upto;
-- count dependents in tickets
SELECT count(*) AS count_1 FROM tickets WHERE tickets.account_id IN (SELECT accounts.id FROM accounts WHERE accounts.closed_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE);
-- count dependents in access_log
SELECT count(*) AS count_1 FROM access_log WHERE access_log.account_id IN (SELECT accounts.id FROM accounts WHERE accounts.closed_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE);
-- select and lock the first batch
SELECT accounts.id FROM accounts WHERE accounts.closed_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE ORDER BY accounts.id LIMIT %(batch_limit)s::INTEGER FOR UPDATE;
-- select and lock the next batch
SELECT accounts.id FROM accounts WHERE accounts.closed_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE AND accounts.id > %(last_0)s::INTEGER ORDER BY accounts.id LIMIT %(batch_limit)s::INTEGER FOR UPDATE;
-- detach dependents in tickets
UPDATE tickets SET account_id=NULL WHERE tickets.account_id = ANY (%(parent_values)s::INTEGER[]);
-- delete dependents in access_log
DELETE FROM access_log WHERE access_log.account_id = ANY (%(parent_values)s::INTEGER[]);
-- delete the batch's rows in accounts
DELETE FROM accounts WHERE accounts.id = ANY (%(keys)s::INTEGER[]);
