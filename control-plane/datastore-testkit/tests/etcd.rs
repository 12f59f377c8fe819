//! The conformance suite on a real etcd, with two servers on one etcd.

use kedge_datastore_testkit::backends::EtcdBackend;

kedge_datastore_testkit::conformance_tests!(multi_server: EtcdBackend::new());
