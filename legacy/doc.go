// Package legacy copies the original REWIND backend's two SQLite
// databases (WIND_main.db and WIND_chat.db, ../shared/legacy.md) into a
// REWIND store, as protocol.md §5 describes: `rewind import-legacy`.
//
// What it keeps: users with their ids (every chat_id the shipped client
// knows stays valid), names (suffixed -2, -3, … where an earlier user
// holds the name as persistence.NameKey compares), emails, profiles,
// creation times and SHA-512 password digests (as auth.LegacyHash, which
// login replaces by argon2id); friendships that both users list;
// pending friend requests; and every DM_<chat id> table as that DM's
// history with the original ids and times.
//
// Invariants, and the tests that guard them:
//   - The legacy files are opened read-only and never written
//     (TestImportLeavesSourceUntouched).
//   - Every row read is imported, already present, or in the report with
//     its values; nothing is dropped silently (TestImportAccountsForEveryRow).
//   - Each user, friendship, request and batch of messages is its own
//     transaction, and everything is looked up before it is written, so a
//     run that stops halfway resumes on the next, and a second run writes
//     nothing (TestImportTwiceChangesNothing, TestImportResumes).
//   - A dry run gets only the Reader half of the store, so it cannot write
//     (TestDryRunWritesNothing).
//   - The imported history reads back over /ws with the original ids and
//     times (TestImportedHistoryOverWebSocket).
package legacy
