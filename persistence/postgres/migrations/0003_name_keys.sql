-- Names compare by persistence.NameKey (the PRECIS UsernameCaseMapped form
-- of RFC 8265, then Unicode full case folding), which SQL cannot compute.
-- This file gives every user a placeholder key (unique, and never a key:
-- keys have no upper-case letters); the Go step that runs after it in the
-- same transaction (rekeyNames in postgres.go) writes every name_folded of
-- users and pending registrations again. Names keep their spelling.
UPDATE users SET name_folded = 'REKEY#' || id;

-- A pending registration reserves nothing: several may wait for one name
-- (the first verified takes it), so the name index stays non-unique. There
-- is at most one per email: a new registration replaces that email's
-- pending one, which keeps the newest where older rows have duplicates.
DELETE FROM pending_registrations AS p WHERE EXISTS (
    SELECT 1 FROM pending_registrations AS newer
    WHERE newer.email_folded = p.email_folded
      AND (newer.created_at, newer.key_hash) > (p.created_at, p.key_hash));
DROP INDEX pending_registrations_email_folded_idx;
CREATE UNIQUE INDEX pending_registrations_email_folded_key ON pending_registrations (email_folded);

-- mail_times: when the verification mails to this email address went out,
-- within the quota's window (unix microseconds, comma-separated): at most 3
-- an hour (persistence.MailQuota).
ALTER TABLE pending_registrations ADD COLUMN mail_times TEXT NOT NULL DEFAULT '';
