-- rule feedback-after-3-months
-- count rows past the cutoff: due, kept by unless, kept by holds
SELECT count(*) AS matched, coalesce(sum(CASE WHEN false THEN %(param_1)s::INTEGER ELSE %(param_2)s::INTEGER END), %(coalesce_1)s::INTEGER) AS kept_unless, coalesce(sum(CASE WHEN false THEN %(param_3)s::INTEGER ELSE %(param_4)s::INTEGER END), %(coalesce_2)s::INTEGER) AS kept_holds FROM feedback WHERE feedback.submitted_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE;
-- count rows in table (for max_fraction; in run, where the catalog estimates fewer rows than the bounded count below would read)
SELECT count(*) AS count_1 FROM feedback;
-- count due rows, up to one past the guard's max_rows (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM feedback WHERE feedback.submitted_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE LIMIT %(guard_bound)s::BIGINT) AS upto;
-- count rows in table, up to what settles max_fraction (for run)
SELECT count(*) AS count_1 FROM (SELECT 1 FROM feedback LIMIT %(table_bound)s::BIGINT) AS upto;
-- count dependents in feedback_contacts
SELECT count(*) AS count_1 FROM feedback_contacts WHERE feedback_contacts.feedback_id IN (SELECT feedback.id FROM feedback WHERE feedback.submitted_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE);
-- count dependents in contact_notes
SELECT count(*) AS count_1 FROM contact_notes WHERE contact_notes.contact_id IN (SELECT feedback_contacts.id FROM feedback_contacts WHERE feedback_contacts.feedback_id IN (SELECT feedback.id FROM feedback WHERE feedback.submitted_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE));
-- select and lock the first batch
SELECT feedback.id FROM feedback WHERE feedback.submitted_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE ORDER BY feedback.id LIMIT %(batch_limit)s::INTEGER FOR UPDATE;
-- select and lock the next batch
SELECT feedback.id FROM feedback WHERE feedback.submitted_at < %(cutoff)s::TIMESTAMP WITHOUT TIME ZONE AND feedback.id > %(last_0)s::INTEGER ORDER BY feedback.id LIMIT %(batch_limit)s::INTEGER FOR UPDATE;
-- select and lock dependents in feedback_contacts
SELECT feedback_contacts.id FROM feedback_contacts WHERE feedback_contacts.feedback_id = ANY (%(parent_values)s::INTEGER[]) FOR UPDATE;
-- delete dependents in contact_notes
DELETE FROM contact_notes WHERE contact_notes.contact_id = ANY (%(parent_values)s::INTEGER[]);
-- delete dependents in feedback_contacts
DELETE FROM feedback_contacts WHERE feedback_contacts.feedback_id = ANY (%(parent_values)s::INTEGER[]);
-- delete the batch's rows in feedback
DELETE FROM feedback WHERE feedback.id = ANY (%(keys)s::INTEGER[]);
