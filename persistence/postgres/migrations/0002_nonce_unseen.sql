-- WriteMessages commits in the round trip of its inserts. An insert calls
-- this for a send whose nonce is held by a row its snapshot cannot see (a
-- concurrent transaction inserted it): the error aborts the transaction
-- before its COMMIT, and WriteMessages runs the batch again in a way that
-- looks the row up in a later snapshot.
CREATE FUNCTION rewind_nonce_unseen(author bigint, nonce text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'nonce % of user % is held by a concurrent transaction', nonce, author
        USING ERRCODE = 'RW001';
END
$$;
