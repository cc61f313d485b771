-- rule feedback-after-3-months
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN 0 THEN ? ELSE ? END), ?) AS kept_unless, coalesce(sum(CASE WHEN 0 THEN ? ELSE ? END), ?) AS kept_holds FROM feedback WHERE feedback.submitted_at < ?;
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM feedback;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM feedback WHERE feedback.submitted_at < ? LIMIT ? OFFSET ?) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM feedback LIMIT ? OFFSET ?) AS upto;
-- count dependents in feedback_contacts
SELECT count(*) AS count_1 FROM feedback_contacts WHERE feedback_contacts.feedback_id IN (SELECT feedback.id FROM feedback WHERE feedback.submitted_at < ?);
-- count dependents in contact_notes
SELECT count(*) AS count_1 FROM contact_notes WHERE contact_notes.contact_id IN (SELECT feedback_contacts.id FROM feedback_contacts WHERE feedback_contacts.feedback_id IN (SELECT feedback.id FROM feedback WHERE feedback.submitted_at < ?));
-- select and lock the first batch
SELECT feedback.id FROM feedback WHERE feedback.submitted_at < ? ORDER BY feedback.id LIMIT ? OFFSET ?;
-- select and lock the next batch
SELECT feedback.id FROM feedback WHERE feedback.submitted_at < ? AND feedback.id > ? ORDER BY feedback.id LIMIT ? OFFSET ?;
-- select and lock dependents in feedback_contacts
SELECT feedback_contacts.id FROM feedback_contacts WHERE feedback_contacts.feedback_id IN (SELECT anon_1.value FROM json_each(?) AS anon_1);
-- delete dependents in contact_notes
DELETE FROM contact_notes WHERE contact_notes.contact_id IN (SELECT anon_1.value FROM json_each(?) AS anon_1);
-- delete dependents in feedback_contacts
DELETE FROM feedback_contacts WHERE feedback_contacts.feedback_id IN (SELECT anon_1.value FROM json_each(?) AS anon_1);
-- delete the batch's rows in feedback
DELETE FROM feedback WHERE feedback.id IN (SELECT anon_1.value FROM json_each(?) AS anon_1);
