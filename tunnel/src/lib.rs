//! kedge-tunnel (skeleton; being written).
