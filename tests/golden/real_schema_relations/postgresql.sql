-- rule closed-tickets
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN false THEN %(param_1)s::INTEGER ELSE %(param_2)s::INTEGER END), %(coalesce_1)s::INTEGER) AS kept_unless, coalesce(sum(CASE WHEN false THEN %(param_3)s::INTEGER ELSE %(param_4)s::INTEGER END), %(coalesce_2)s::INTEGER) AS kept_holds FROM tickets WHERE tickets.closed_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE;
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM tickets;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM tickets WHERE tickets.closed_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE LIMIT %(guard_bound)s::BIGINT) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM tickets LIMIT %(table_bound)s::BIGINT) AS upto;
-- count dependents in threads
SELECT count(*) AS count_1 FROM threads WHERE threads.object_id IN (SELECT tickets.id FROM tickets WHERE tickets.closed_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE) AND threads.object_type = %(object_type_1)s::VARCHAR;
-- count dependents in entries
SELECT count(*) AS count_1 FROM entries WHERE entries.thread_id IN (SELECT threads.id FROM threads WHERE threads.object_id IN (SELECT tickets.id FROM tickets WHERE tickets.closed_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE) AND threads.object_type = %(object_type_1)s::VARCHAR);
-- count dependents in form_entries
SELECT count(*) AS count_1 FROM form_entries WHERE form_entries.object_id IN (SELECT tickets.id FROM tickets WHERE tickets.closed_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE) AND form_entries.object_type = %(object_type_1)s::VARCHAR;
-- select and lock the first batch
SELECT tickets.id FROM tickets WHERE tickets.closed_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE ORDER BY tickets.id LIMIT %(batch_limit)s::INTEGER FOR UPDATE;
-- select and lock the next batch
SELECT tickets.id FROM tickets WHERE tickets.closed_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE AND tickets.id > %(last_0)s::INTEGER ORDER BY tickets.id LIMIT %(batch_limit)s::INTEGER FOR UPDATE;
-- select and lock dependents in threads
SELECT threads.id FROM threads WHERE threads.object_id = ANY (%(parent_values)s::INTEGER[]) AND threads.object_type = %(object_type_1)s::VARCHAR FOR UPDATE;
-- delete dependents in entries
DELETE FROM entries WHERE entries.thread_id = ANY (%(parent_values)s::INTEGER[]);
-- delete dependents in threads
DELETE FROM threads WHERE threads.object_id = ANY (%(parent_values)s::INTEGER[]) AND threads.object_type = %(object_type_1)s::VARCHAR;
-- detach dependents in form_entries
UPDATE form_entries SET object_id=NULL WHERE form_entries.object_id = ANY (%(parent_values)s::INTEGER[]) AND form_entries.object_type = %(object_type_1)s::VARCHAR;
-- delete the batch's rows in tickets
DELETE FROM tickets WHERE tickets.id = ANY (%(keys)s::INTEGER[]);

-- rule ticket-threads
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN false THEN %(param_1)s::INTEGER ELSE %(param_2)s::INTEGER END), %(coalesce_1)s::INTEGER) AS kept_unless, coalesce(sum(CASE WHEN (EXISTS (SELECT 1 FROM tickets AS rel2, legal_holds AS hold WHERE rel2.id = threads.object_id AND hold.user_id = rel2.user_id AND hold.released_at IS NULL)) THEN %(param_3)s::INTEGER ELSE %(param_4)s::INTEGER END), %(coalesce_2)s::INTEGER) AS kept_holds FROM threads WHERE (EXISTS (SELECT 1 FROM tickets AS rel1 WHERE rel1.id = threads.object_id AND rel1.closed_ms < %(cutoff)s::BIGINT)) AND threads.object_type = %(object_type_1)s::VARCHAR;
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM threads;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM threads WHERE (EXISTS (SELECT 1 FROM tickets AS rel1 WHERE rel1.id = threads.object_id AND rel1.closed_ms < %(cutoff)s::BIGINT)) AND threads.object_type = %(object_type_1)s::VARCHAR AND NOT (EXISTS (SELECT 1 FROM tickets AS rel2, legal_holds AS hold WHERE rel2.id = threads.object_id AND hold.user_id = rel2.user_id AND hold.released_at IS NULL)) LIMIT %(guard_bound)s::BIGINT) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM threads LIMIT %(table_bound)s::BIGINT) AS upto;
-- count dependents in entries
SELECT count(*) AS count_1 FROM entries WHERE entries.thread_id IN (SELECT threads.id FROM threads WHERE (EXISTS (SELECT 1 FROM tickets AS rel1 WHERE rel1.id = threads.object_id AND rel1.closed_ms < %(cutoff)s::BIGINT)) AND threads.object_type = %(object_type_1)s::VARCHAR AND NOT (EXISTS (SELECT 1 FROM tickets AS rel2, legal_holds AS hold WHERE rel2.id = threads.object_id AND hold.user_id = rel2.user_id AND hold.released_at IS NULL)));
-- select and lock the first batch
SELECT threads.id FROM threads WHERE (EXISTS (SELECT 1 FROM tickets AS rel1 WHERE rel1.id = threads.object_id AND rel1.closed_ms < %(cutoff)s::BIGINT)) AND threads.object_type = %(object_type_1)s::VARCHAR AND NOT (EXISTS (SELECT 1 FROM tickets AS rel2, legal_holds AS hold WHERE rel2.id = threads.object_id AND hold.user_id = rel2.user_id AND hold.released_at IS NULL)) ORDER BY threads.id LIMIT %(batch_limit)s::INTEGER FOR UPDATE;
-- select and lock the next batch
SELECT threads.id FROM threads WHERE (EXISTS (SELECT 1 FROM tickets AS rel1 WHERE rel1.id = threads.object_id AND rel1.closed_ms < %(cutoff)s::BIGINT)) AND threads.object_type = %(object_type_1)s::VARCHAR AND NOT (EXISTS (SELECT 1 FROM tickets AS rel2, legal_holds AS hold WHERE rel2.id = threads.object_id AND hold.user_id = rel2.user_id AND hold.released_at IS NULL)) AND threads.id > %(last_0)s::INTEGER ORDER BY threads.id LIMIT %(batch_limit)s::INTEGER FOR UPDATE;
-- delete dependents in entries
DELETE FROM entries WHERE entries.thread_id = ANY (%(parent_values)s::INTEGER[]);
-- delete the batch's rows in threads
DELETE FROM threads WHERE threads.id = ANY (%(keys)s::INTEGER[]);

-- rule ticket-entries
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN false THEN %(param_1)s::INTEGER ELSE %(param_2)s::INTEGER END), %(coalesce_1)s::INTEGER) AS kept_unless, coalesce(sum(CASE WHEN false THEN %(param_3)s::INTEGER ELSE %(param_4)s::INTEGER END), %(coalesce_2)s::INTEGER) AS kept_holds FROM entries WHERE EXISTS (SELECT 1 FROM threads AS rel4, tickets AS rel5 WHERE rel4.id = entries.thread_id AND rel4.object_type = %(object_type_1)s::VARCHAR AND rel5.id = rel4.object_id AND rel5.closed_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE);
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM entries;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM entries WHERE EXISTS (SELECT 1 FROM threads AS rel4, tickets AS rel5 WHERE rel4.id = entries.thread_id AND rel4.object_type = %(object_type_1)s::VARCHAR AND rel5.id = rel4.object_id AND rel5.closed_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE) LIMIT %(guard_bound)s::BIGINT) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM entries LIMIT %(table_bound)s::BIGINT) AS upto;
-- select and lock the first batch
SELECT entries.id FROM entries WHERE EXISTS (SELECT 1 FROM threads AS rel4, tickets AS rel5 WHERE rel4.id = entries.thread_id AND rel4.object_type = %(object_type_1)s::VARCHAR AND rel5.id = rel4.object_id AND rel5.closed_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE) ORDER BY entries.id LIMIT %(batch_limit)s::INTEGER FOR UPDATE;
-- select and lock the next batch
SELECT entries.id FROM entries WHERE (EXISTS (SELECT 1 FROM threads AS rel4, tickets AS rel5 WHERE rel4.id = entries.thread_id AND rel4.object_type = %(object_type_1)s::VARCHAR AND rel5.id = rel4.object_id AND rel5.closed_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE)) AND entries.id > %(last_0)s::INTEGER ORDER BY entries.id LIMIT %(batch_limit)s::INTEGER FOR UPDATE;
-- delete the batch's rows in entries
DELETE FROM entries WHERE entries.id = ANY (%(keys)s::INTEGER[]);
