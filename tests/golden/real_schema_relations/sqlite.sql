-- rule closed-tickets
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN 0 THEN ? ELSE ? END), ?) AS kept_unless, coalesce(sum(CASE WHEN 0 THEN ? ELSE ? END), ?) AS kept_holds FROM tickets WHERE tickets.closed_at < ?;
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM tickets;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM tickets WHERE tickets.closed_at < ? LIMIT ? OFFSET ?) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM tickets LIMIT ? OFFSET ?) AS upto;
-- count dependents in threads
SELECT count(*) AS count_1 FROM threads WHERE threads.object_id IN (SELECT tickets.id FROM tickets WHERE tickets.closed_at < ?) AND threads.object_type = ?;
-- count dependents in entries
SELECT count(*) AS count_1 FROM entries WHERE entries.thread_id IN (SELECT threads.id FROM threads WHERE threads.object_id IN (SELECT tickets.id FROM tickets WHERE tickets.closed_at < ?) AND threads.object_type = ?);
-- count dependents in form_entries
SELECT count(*) AS count_1 FROM form_entries WHERE form_entries.object_id IN (SELECT tickets.id FROM tickets WHERE tickets.closed_at < ?) AND form_entries.object_type = ?;
-- select and lock the first batch
SELECT tickets.id FROM tickets WHERE tickets.closed_at < ? ORDER BY tickets.id LIMIT ? OFFSET ?;
-- select and lock the next batch
SELECT tickets.id FROM tickets WHERE tickets.closed_at < ? AND tickets.id > ? ORDER BY tickets.id LIMIT ? OFFSET ?;
-- select and lock dependents in threads
SELECT threads.id FROM threads WHERE threads.object_id IN (SELECT anon_1.value FROM json_each(?) AS anon_1) AND threads.object_type = ?;
-- delete dependents in entries
DELETE FROM entries WHERE entries.thread_id IN (SELECT anon_1.value FROM json_each(?) AS anon_1);
-- delete dependents in threads
DELETE FROM threads WHERE threads.object_id IN (SELECT anon_1.value FROM json_each(?) AS anon_1) AND threads.object_type = ?;
-- detach dependents in form_entries
UPDATE form_entries SET object_id=NULL WHERE form_entries.object_id IN (SELECT anon_1.value FROM json_each(?) AS anon_1) AND form_entries.object_type = ?;
-- delete the batch's rows in tickets
DELETE FROM tickets WHERE tickets.id IN (SELECT anon_1.value FROM json_each(?) AS anon_1);

-- rule ticket-threads
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN 0 THEN ? ELSE ? END), ?) AS kept_unless, coalesce(sum(CASE WHEN (EXISTS (SELECT 1 FROM tickets AS rel2, legal_holds AS hold WHERE rel2.id = threads.object_id AND hold.user_id = rel2.user_id AND hold.released_at IS NULL)) THEN ? ELSE ? END), ?) AS kept_holds FROM threads WHERE (EXISTS (SELECT 1 FROM tickets AS rel1 WHERE rel1.id = threads.object_id AND rel1.closed_ms < ?)) AND threads.object_type = ?;
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM threads;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM threads WHERE (EXISTS (SELECT 1 FROM tickets AS rel1 WHERE rel1.id = threads.object_id AND rel1.closed_ms < ?)) AND threads.object_type = ? AND NOT (EXISTS (SELECT 1 FROM tickets AS rel2, legal_holds AS hold WHERE rel2.id = threads.object_id AND hold.user_id = rel2.user_id AND hold.released_at IS NULL)) LIMIT ? OFFSET ?) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM threads LIMIT ? OFFSET ?) AS upto;
-- count dependents in entries
SELECT count(*) AS count_1 FROM entries WHERE entries.thread_id IN (SELECT threads.id FROM threads WHERE (EXISTS (SELECT 1 FROM tickets AS rel1 WHERE rel1.id = threads.object_id AND rel1.closed_ms < ?)) AND threads.object_type = ? AND NOT (EXISTS (SELECT 1 FROM tickets AS rel2, legal_holds AS hold WHERE rel2.id = threads.object_id AND hold.user_id = rel2.user_id AND hold.released_at IS NULL)));
-- select and lock the first batch
SELECT threads.id FROM threads WHERE (EXISTS (SELECT 1 FROM tickets AS rel1 WHERE rel1.id = threads.object_id AND rel1.closed_ms < ?)) AND threads.object_type = ? AND NOT (EXISTS (SELECT 1 FROM tickets AS rel2, legal_holds AS hold WHERE rel2.id = threads.object_id AND hold.user_id = rel2.user_id AND hold.released_at IS NULL)) ORDER BY threads.id LIMIT ? OFFSET ?;
-- select and lock the next batch
SELECT threads.id FROM threads WHERE (EXISTS (SELECT 1 FROM tickets AS rel1 WHERE rel1.id = threads.object_id AND rel1.closed_ms < ?)) AND threads.object_type = ? AND NOT (EXISTS (SELECT 1 FROM tickets AS rel2, legal_holds AS hold WHERE rel2.id = threads.object_id AND hold.user_id = rel2.user_id AND hold.released_at IS NULL)) AND threads.id > ? ORDER BY threads.id LIMIT ? OFFSET ?;
-- delete dependents in entries
DELETE FROM entries WHERE entries.thread_id IN (SELECT anon_1.value FROM json_each(?) AS anon_1);
-- delete the batch's rows in threads
DELETE FROM threads WHERE threads.id IN (SELECT anon_1.value FROM json_each(?) AS anon_1);

-- rule ticket-entries
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN 0 THEN ? ELSE ? END), ?) AS kept_unless, coalesce(sum(CASE WHEN 0 THEN ? ELSE ? END), ?) AS kept_holds FROM entries WHERE EXISTS (SELECT 1 FROM threads AS rel4, tickets AS rel5 WHERE rel4.id = entries.thread_id AND rel4.object_type = ? AND rel5.id = rel4.object_id AND rel5.closed_at < ?);
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM entries;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM entries WHERE EXISTS (SELECT 1 FROM threads AS rel4, tickets AS rel5 WHERE rel4.id = entries.thread_id AND rel4.object_type = ? AND rel5.id = rel4.object_id AND rel5.closed_at < ?) LIMIT ? OFFSET ?) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM entries LIMIT ? OFFSET ?) AS upto;
-- select and lock the first batch
SELECT entries.id FROM entries WHERE EXISTS (SELECT 1 FROM threads AS rel4, tickets AS rel5 WHERE rel4.id = entries.thread_id AND rel4.object_type = ? AND rel5.id = rel4.object_id AND rel5.closed_at < ?) ORDER BY entries.id LIMIT ? OFFSET ?;
-- select and lock the next batch
SELECT entries.id FROM entries WHERE (EXISTS (SELECT 1 FROM threads AS rel4, tickets AS rel5 WHERE rel4.id = entries.thread_id AND rel4.object_type = ? AND rel5.id = rel4.object_id AND rel5.closed_at < ?)) AND entries.id > ? ORDER BY entries.id LIMIT ? OFFSET ?;
-- delete the batch's rows in entries
DELETE FROM entries WHERE entries.id IN (SELECT anon_1.value FROM json_each(?) AS anon_1);
