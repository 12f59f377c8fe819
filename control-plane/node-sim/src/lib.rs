//! kedge-node-sim (skeleton; being written).
