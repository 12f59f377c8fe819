//! The conformance suite on SQLite.

use kedge_datastore_testkit::backends::SqliteBackend;

kedge_datastore_testkit::conformance_tests!(SqliteBackend::new());
