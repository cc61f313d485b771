-- rule feedback-after-3-months
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN false THEN %(param_1)s ELSE %(param_2)s END), %(coalesce_1)s) AS kept_unless, coalesce(sum(CASE WHEN false THEN %(param_3)s ELSE %(param_4)s END), %(coalesce_2)s) AS kept_holds FROM feedback WHERE feedback.submitted_at < %(cutoff)s;
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM feedback;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM feedback WHERE feedback.submitted_at < %(cutoff)s LIMIT %(guard_bound)s) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM feedback LIMIT %(table_bound)s) AS upto;
-- count dependents in feedback_contacts
SELECT count(*) AS count_1 FROM feedback_contacts WHERE feedback_contacts.feedback_id IN (SELECT feedback.id FROM feedback WHERE feedback.submitted_at < %(cutoff)s);
-- count dependents in contact_notes
SELECT count(*) AS count_1 FROM contact_notes WHERE contact_notes.contact_id IN (SELECT feedback_contacts.id FROM feedback_contacts WHERE feedback_contacts.feedback_id IN (SELECT feedback.id FROM feedback WHERE feedback.submitted_at < %(cutoff)s));
-- highest key (bounds the windows of keys)
SELECT max(feedback.id) AS max_1 FROM feedback;
-- select and lock the first batch
SELECT feedback.id FROM feedback WHERE feedback.submitted_at < %(cutoff)s ORDER BY feedback.id LIMIT %(batch_limit)s FOR UPDATE;
-- select and lock the next batch within a window of keys
SELECT feedback.id FROM feedback WHERE feedback.submitted_at < %(cutoff)s AND feedback.id > %(last_0)s AND feedback.id <= %(upto)s ORDER BY feedback.id LIMIT %(batch_limit)s FOR UPDATE;
-- select and lock the next batch
SELECT feedback.id FROM feedback WHERE feedback.submitted_at < %(cutoff)s AND feedback.id > %(last_0)s ORDER BY feedback.id LIMIT %(batch_limit)s FOR UPDATE;
-- select and lock dependents in feedback_contacts
SELECT feedback_contacts.id FROM feedback_contacts WHERE feedback_contacts.feedback_id IN (<the integers of :parent_values, inline>) FOR UPDATE;
-- delete dependents in contact_notes
DELETE FROM contact_notes WHERE contact_notes.contact_id IN (<the integers of :parent_values, inline>);
-- delete dependents in feedback_contacts
DELETE FROM feedback_contacts WHERE feedback_contacts.feedback_id IN (<the integers of :parent_values, inline>);
-- delete the batch's rows in feedback
DELETE FROM feedback WHERE feedback.id IN (<the integers of :keys, inline>);
