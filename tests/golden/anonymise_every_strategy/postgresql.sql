-- rule closed-accounts-after-30-days
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN false THEN %(param_1)s::INTEGER ELSE %(param_2)s::INTEGER END), %(coalesce_1)s::INTEGER) AS kept_unless, coalesce(sum(CASE WHEN false THEN %(param_3)s::INTEGER ELSE %(param_4)s::INTEGER END), %(coalesce_2)s::INTEGER) AS kept_holds FROM accounts WHERE accounts.closed_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE AND accounts.anonymised_at IS NULL;
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM accounts;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM accounts WHERE accounts.closed_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE AND accounts.anonymised_at IS NULL LIMIT %(guard_bound)s::BIGINT) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM accounts LIMIT %(table_bound)s::BIGINT) AS upto;
-- select and lock the first batch
SELECT accounts.id FROM accounts WHERE accounts.closed_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE AND accounts.anonymised_at IS NULL ORDER BY accounts.id LIMIT %(batch_limit)s::INTEGER FOR UPDATE;
-- select and lock the next batch
SELECT accounts.id FROM accounts WHERE accounts.closed_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE AND accounts.anonymised_at IS NULL AND accounts.id > %(last_0)s::INTEGER ORDER BY accounts.id LIMIT %(batch_limit)s::INTEGER FOR UPDATE;
-- anonymise the batch's rows in accounts
UPDATE accounts SET username=(%(set_username_prefix_text)s::VARCHAR || substr(encode(sha256(%(hmac_outer)s || sha256(%(hmac_inner)s || convert_to(accounts.username, %(param_1)s::VARCHAR))), %(encode_1)s::VARCHAR), %(substr_1)s::INTEGER, %(substr_2)s::INTEGER)), email=NULL, phone=(repeat(%(set_phone_mask_char)s::VARCHAR, greatest(char_length(accounts.phone) - %(char_length_1)s::INTEGER, %(greatest_1)s::INTEGER)) || right(accounts.phone, %(right_1)s::INTEGER)), note=%(set_note_redacted)s::VARCHAR, status=%(set_status_value)s::VARCHAR, last_ip=CASE WHEN (accounts.last_ip ~ %(last_ip_1)s::VARCHAR) THEN host(network(set_masklen(CAST(accounts.last_ip AS INET), %(set_masklen_1)s::INTEGER))) WHEN (accounts.last_ip ~ %(last_ip_2)s::VARCHAR) THEN host(network(set_masklen(CAST(accounts.last_ip AS INET), %(set_masklen_2)s::INTEGER))) ELSE accounts.last_ip END, birth_date=CAST(date_trunc(%(date_trunc_1)s::VARCHAR, accounts.birth_date) AS DATE), anonymised_at=%(mark_time)s::TIMESTAMP WITHOUT TIME ZONE WHERE accounts.id = ANY (%(keys)s::INTEGER[]);
