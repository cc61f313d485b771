-- rule feedback-after-3-months
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN ((EXISTS (SELECT 1 FROM tickets AS rel1 WHERE rel1.id = feedback.ticket_id AND rel1.status IN (<one placeholder per item of :status_1>))) OR feedback.email IS NULL) THEN ? ELSE ? END), ?) AS kept_unless, coalesce(sum(CASE WHEN (NOT ((EXISTS (SELECT 1 FROM tickets AS rel1 WHERE rel1.id = feedback.ticket_id AND rel1.status IN (<one placeholder per item of :status_1>))) OR feedback.email IS NULL) AND (EXISTS (SELECT 1 FROM legal_holds AS hold WHERE hold.subject_id = feedback.account_id AND hold.released_at IS NULL))) THEN ? ELSE ? END), ?) AS kept_holds FROM feedback WHERE feedback.submitted_at < ? AND feedback.body IS NOT ?;
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM feedback;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM feedback WHERE feedback.submitted_at < ? AND feedback.body IS NOT ? AND NOT ((EXISTS (SELECT 1 FROM tickets AS rel1 WHERE rel1.id = feedback.ticket_id AND rel1.status IN (<one placeholder per item of :status_1>))) OR feedback.email IS NULL) AND NOT (EXISTS (SELECT 1 FROM legal_holds AS hold WHERE hold.subject_id = feedback.account_id AND hold.released_at IS NULL)) LIMIT ? OFFSET ?) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM feedback LIMIT ? OFFSET ?) AS upto;
-- count dependents in feedback_contacts
SELECT count(*) AS count_1 FROM feedback_contacts WHERE feedback_contacts.feedback_id IN (SELECT feedback.id FROM feedback WHERE feedback.submitted_at < ? AND feedback.body IS NOT ? AND NOT ((EXISTS (SELECT 1 FROM tickets AS rel1 WHERE rel1.id = feedback.ticket_id AND rel1.status IN (<one placeholder per item of :status_1>))) OR feedback.email IS NULL) AND NOT (EXISTS (SELECT 1 FROM legal_holds AS hold WHERE hold.subject_id = feedback.account_id AND hold.released_at IS NULL)));
-- count dependents in contact_notes
SELECT count(*) AS count_1 FROM contact_notes WHERE contact_notes.contact_id IN (SELECT feedback_contacts.id FROM feedback_contacts WHERE feedback_contacts.feedback_id IN (SELECT feedback.id FROM feedback WHERE feedback.submitted_at < ? AND feedback.body IS NOT ? AND NOT ((EXISTS (SELECT 1 FROM tickets AS rel1 WHERE rel1.id = feedback.ticket_id AND rel1.status IN (<one placeholder per item of :status_1>))) OR feedback.email IS NULL) AND NOT (EXISTS (SELECT 1 FROM legal_holds AS hold WHERE hold.subject_id = feedback.account_id AND hold.released_at IS NULL))));
-- select and lock the first batch
SELECT feedback.id FROM feedback WHERE feedback.submitted_at < ? AND feedback.body IS NOT ? AND NOT ((EXISTS (SELECT 1 FROM tickets AS rel1 WHERE rel1.id = feedback.ticket_id AND rel1.status IN (<one placeholder per item of :status_1>))) OR feedback.email IS NULL) AND NOT (EXISTS (SELECT 1 FROM legal_holds AS hold WHERE hold.subject_id = feedback.account_id AND hold.released_at IS NULL)) ORDER BY feedback.id LIMIT ? OFFSET ?;
-- select and lock the next batch
SELECT feedback.id FROM feedback WHERE feedback.submitted_at < ? AND feedback.body IS NOT ? AND NOT ((EXISTS (SELECT 1 FROM tickets AS rel1 WHERE rel1.id = feedback.ticket_id AND rel1.status IN (<one placeholder per item of :status_1>))) OR feedback.email IS NULL) AND NOT (EXISTS (SELECT 1 FROM legal_holds AS hold WHERE hold.subject_id = feedback.account_id AND hold.released_at IS NULL)) AND feedback.id > ? ORDER BY feedback.id LIMIT ? OFFSET ?;
-- select and lock dependents in feedback_contacts
SELECT feedback_contacts.id FROM feedback_contacts WHERE feedback_contacts.feedback_id IN (SELECT anon_1.value FROM json_each(?) AS anon_1);
-- delete dependents in contact_notes
DELETE FROM contact_notes WHERE contact_notes.contact_id IN (SELECT anon_1.value FROM json_each(?) AS anon_1);
-- delete dependents in feedback_contacts
DELETE FROM feedback_contacts WHERE feedback_contacts.feedback_id IN (SELECT anon_1.value FROM json_each(?) AS anon_1);
-- delete the batch's rows in feedback
DELETE FROM feedback WHERE feedback.id IN (SELECT anon_1.value FROM json_each(?) AS anon_1);
