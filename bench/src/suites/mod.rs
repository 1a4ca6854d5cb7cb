pub mod cluster;
pub mod codec;
pub mod gc;
pub mod load;
pub mod net;
pub mod repair;
pub mod store;
