-- A nonce is the idempotency key of a send per author and chat
-- (protocol.md §2.3): the same nonce in another room is another message.
-- Nonces are kept as long as their message, which is longer than the 24
-- hours the protocol promises.
CREATE UNIQUE INDEX messages_author_room_nonce_key ON messages (author_id, room_id, nonce) WHERE nonce IS NOT NULL;
DROP INDEX messages_author_nonce_key;
