//! The conformance suite on a real PostgreSQL, with two servers on one database.

use kedge_datastore_testkit::backends::PostgresBackend;

kedge_datastore_testkit::conformance_tests!(multi_server: PostgresBackend::new());
