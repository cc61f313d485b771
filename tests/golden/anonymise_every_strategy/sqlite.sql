-- rule closed-accounts-after-30-days
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN 0 THEN ? ELSE ? END), ?) AS kept_unless, coalesce(sum(CASE WHEN 0 THEN ? ELSE ? END), ?) AS kept_holds FROM accounts WHERE accounts.closed_at < ? AND accounts.anonymised_at IS NULL;
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM accounts;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM accounts WHERE accounts.closed_at < ? AND accounts.anonymised_at IS NULL LIMIT ? OFFSET ?) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM accounts LIMIT ? OFFSET ?) AS upto;
-- select and lock the first batch
SELECT accounts.id FROM accounts WHERE accounts.closed_at < ? AND accounts.anonymised_at IS NULL ORDER BY accounts.id LIMIT ? OFFSET ?;
-- select and lock the next batch
SELECT accounts.id FROM accounts WHERE accounts.closed_at < ? AND accounts.anonymised_at IS NULL AND accounts.id > ? ORDER BY accounts.id LIMIT ? OFFSET ?;
-- anonymise the batch's rows in accounts
UPDATE accounts SET username=(? || substr(retention_hmac(accounts.username), ?, ?)), email=NULL, phone=retention_mask(accounts.phone, ?, ?), note=?, status=?, last_ip=retention_truncate_ip(accounts.last_ip), birth_date=retention_truncate_date(accounts.birth_date, ?), anonymised_at=? WHERE accounts.id IN (SELECT anon_1.value FROM json_each(?) AS anon_1);
