-- PostgreSQL's 0002 (rewind_nonce_unseen, a function of its WriteMessages)
-- has no SQLite counterpart. This file keeps the two stores' migration
-- numbers alike, so that 0003 onwards mean the same change in both.
SELECT 1;
