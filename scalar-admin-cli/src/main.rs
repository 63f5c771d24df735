//! `scalar-admin`: pause and unpause every pod of a Scalar deployment.

fn main() {}
