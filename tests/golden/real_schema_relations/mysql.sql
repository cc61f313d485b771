-- rule closed-tickets
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN false THEN %(param_1)s ELSE %(param_2)s END), %(coalesce_1)s) AS kept_unless, coalesce(sum(CASE WHEN false THEN %(param_3)s ELSE %(param_4)s END), %(coalesce_2)s) AS kept_holds FROM tickets WHERE tickets.closed_at < %(cutoff)s;
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM tickets;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM tickets WHERE tickets.closed_at < %(cutoff)s LIMIT %(guard_bound)s) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM tickets LIMIT %(table_bound)s) AS upto;
-- count dependents in threads
SELECT count(*) AS count_1 FROM threads WHERE threads.object_id IN (SELECT tickets.id FROM tickets WHERE tickets.closed_at < %(cutoff)s) AND threads.object_type = %(object_type_1)s;
-- count dependents in entries
SELECT count(*) AS count_1 FROM entries WHERE entries.thread_id IN (SELECT threads.id FROM threads WHERE threads.object_id IN (SELECT tickets.id FROM tickets WHERE tickets.closed_at < %(cutoff)s) AND threads.object_type = %(object_type_1)s);
-- count dependents in form_entries
SELECT count(*) AS count_1 FROM form_entries WHERE form_entries.object_id IN (SELECT tickets.id FROM tickets WHERE tickets.closed_at < %(cutoff)s) AND form_entries.object_type = %(object_type_1)s;
-- highest key (bounds the windows of keys)
SELECT max(tickets.id) AS max_1 FROM tickets;
-- select and lock the first batch
SELECT tickets.id FROM tickets WHERE tickets.closed_at < %(cutoff)s ORDER BY tickets.id LIMIT %(batch_limit)s FOR UPDATE;
-- select and lock the next batch within a window of keys
SELECT tickets.id FROM tickets WHERE tickets.closed_at < %(cutoff)s AND tickets.id > %(last_0)s AND tickets.id <= %(upto)s ORDER BY tickets.id LIMIT %(batch_limit)s FOR UPDATE;
-- select and lock the next batch
SELECT tickets.id FROM tickets WHERE tickets.closed_at < %(cutoff)s AND tickets.id > %(last_0)s ORDER BY tickets.id LIMIT %(batch_limit)s FOR UPDATE;
-- select and lock dependents in threads
SELECT threads.id FROM threads WHERE threads.object_id IN (<the integers of :parent_values, inline>) AND threads.object_type = %(object_type_1)s FOR UPDATE;
-- delete dependents in entries
DELETE FROM entries WHERE entries.thread_id IN (<the integers of :parent_values, inline>);
-- delete dependents in threads
DELETE FROM threads WHERE threads.object_id IN (<the integers of :parent_values, inline>) AND threads.object_type = %(object_type_1)s;
-- detach dependents in form_entries
UPDATE form_entries SET object_id=NULL WHERE form_entries.object_id IN (<the integers of :parent_values, inline>) AND form_entries.object_type = %(object_type_1)s;
-- delete the batch's rows in tickets
DELETE FROM tickets WHERE tickets.id IN (<the integers of :keys, inline>);

-- rule ticket-threads
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN false THEN %(param_1)s ELSE %(param_2)s END), %(coalesce_1)s) AS kept_unless, coalesce(sum(CASE WHEN (EXISTS (SELECT 1 FROM tickets AS rel2, legal_holds AS hold WHERE rel2.id = threads.object_id AND hold.user_id = rel2.user_id AND hold.released_at IS NULL)) THEN %(param_3)s ELSE %(param_4)s END), %(coalesce_2)s) AS kept_holds FROM threads WHERE (EXISTS (SELECT 1 FROM tickets AS rel1 WHERE rel1.id = threads.object_id AND rel1.closed_ms < %(cutoff)s)) AND threads.object_type = %(object_type_1)s;
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM threads;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM threads WHERE (EXISTS (SELECT 1 FROM tickets AS rel1 WHERE rel1.id = threads.object_id AND rel1.closed_ms < %(cutoff)s)) AND threads.object_type = %(object_type_1)s AND NOT (EXISTS (SELECT 1 FROM tickets AS rel2, legal_holds AS hold WHERE rel2.id = threads.object_id AND hold.user_id = rel2.user_id AND hold.released_at IS NULL)) LIMIT %(guard_bound)s) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM threads LIMIT %(table_bound)s) AS upto;
-- count dependents in entries
SELECT count(*) AS count_1 FROM entries WHERE entries.thread_id IN (SELECT threads.id FROM threads WHERE (EXISTS (SELECT 1 FROM tickets AS rel1 WHERE rel1.id = threads.object_id AND rel1.closed_ms < %(cutoff)s)) AND threads.object_type = %(object_type_1)s AND NOT (EXISTS (SELECT 1 FROM tickets AS rel2, legal_holds AS hold WHERE rel2.id = threads.object_id AND hold.user_id = rel2.user_id AND hold.released_at IS NULL)));
-- highest key (bounds the windows of keys)
SELECT max(threads.id) AS max_1 FROM threads;
-- select and lock the first batch
SELECT threads.id FROM threads WHERE (EXISTS (SELECT 1 FROM tickets AS rel1 WHERE rel1.id = threads.object_id AND rel1.closed_ms < %(cutoff)s)) AND threads.object_type = %(object_type_1)s AND NOT (EXISTS (SELECT 1 FROM tickets AS rel2, legal_holds AS hold WHERE rel2.id = threads.object_id AND hold.user_id = rel2.user_id AND hold.released_at IS NULL)) ORDER BY threads.id LIMIT %(batch_limit)s FOR UPDATE;
-- select and lock the next batch within a window of keys
SELECT threads.id FROM threads WHERE (EXISTS (SELECT 1 FROM tickets AS rel1 WHERE rel1.id = threads.object_id AND rel1.closed_ms < %(cutoff)s)) AND threads.object_type = %(object_type_1)s AND NOT (EXISTS (SELECT 1 FROM tickets AS rel2, legal_holds AS hold WHERE rel2.id = threads.object_id AND hold.user_id = rel2.user_id AND hold.released_at IS NULL)) AND threads.id > %(last_0)s AND threads.id <= %(upto)s ORDER BY threads.id LIMIT %(batch_limit)s FOR UPDATE;
-- select and lock the next batch
SELECT threads.id FROM threads WHERE (EXISTS (SELECT 1 FROM tickets AS rel1 WHERE rel1.id = threads.object_id AND rel1.closed_ms < %(cutoff)s)) AND threads.object_type = %(object_type_1)s AND NOT (EXISTS (SELECT 1 FROM tickets AS rel2, legal_holds AS hold WHERE rel2.id = threads.object_id AND hold.user_id = rel2.user_id AND hold.released_at IS NULL)) AND threads.id > %(last_0)s ORDER BY threads.id LIMIT %(batch_limit)s FOR UPDATE;
-- delete dependents in entries
DELETE FROM entries WHERE entries.thread_id IN (<the integers of :parent_values, inline>);
-- delete the batch's rows in threads
DELETE FROM threads WHERE threads.id IN (<the integers of :keys, inline>);

-- rule ticket-entries
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN false THEN %(param_1)s ELSE %(param_2)s END), %(coalesce_1)s) AS kept_unless, coalesce(sum(CASE WHEN false THEN %(param_3)s ELSE %(param_4)s END), %(coalesce_2)s) AS kept_holds FROM entries WHERE EXISTS (SELECT 1 FROM threads AS rel4, tickets AS rel5 WHERE rel4.id = entries.thread_id AND rel4.object_type = %(object_type_1)s AND rel5.id = rel4.object_id AND rel5.closed_at < %(cutoff)s);
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM entries;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM entries WHERE EXISTS (SELECT 1 FROM threads AS rel4, tickets AS rel5 WHERE rel4.id = entries.thread_id AND rel4.object_type = %(object_type_1)s AND rel5.id = rel4.object_id AND rel5.closed_at < %(cutoff)s) LIMIT %(guard_bound)s) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM entries LIMIT %(table_bound)s) AS upto;
-- highest key (bounds the windows of keys)
SELECT max(entries.id) AS max_1 FROM entries;
-- select and lock the first batch
SELECT entries.id FROM entries WHERE EXISTS (SELECT 1 FROM threads AS rel4, tickets AS rel5 WHERE rel4.id = entries.thread_id AND rel4.object_type = %(object_type_1)s AND rel5.id = rel4.object_id AND rel5.closed_at < %(cutoff)s) ORDER BY entries.id LIMIT %(batch_limit)s FOR UPDATE;
-- select and lock the next batch within a window of keys
SELECT entries.id FROM entries WHERE (EXISTS (SELECT 1 FROM threads AS rel4, tickets AS rel5 WHERE rel4.id = entries.thread_id AND rel4.object_type = %(object_type_1)s AND rel5.id = rel4.object_id AND rel5.closed_at < %(cutoff)s)) AND entries.id > %(last_0)s AND entries.id <= %(upto)s ORDER BY entries.id LIMIT %(batch_limit)s FOR UPDATE;
-- select and lock the next batch
SELECT entries.id FROM entries WHERE (EXISTS (SELECT 1 FROM threads AS rel4, tickets AS rel5 WHERE rel4.id = entries.thread_id AND rel4.object_type = %(object_type_1)s AND rel5.id = rel4.object_id AND rel5.closed_at < %(cutoff)s)) AND entries.id > %(last_0)s ORDER BY entries.id LIMIT %(batch_limit)s FOR UPDATE;
-- delete the batch's rows in entries
DELETE FROM entries WHERE entries.id IN (<the integers of :keys, inline>);
