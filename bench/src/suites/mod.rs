pub mod cluster;
pub mod codec;
pub mod net;
pub mod repair;
pub mod store;
