//! kedge-pause: the tiny process that holds a pod sandbox's namespaces and reaps zombies

fn main() {}
