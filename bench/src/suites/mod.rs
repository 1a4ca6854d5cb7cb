pub mod cluster;
pub mod codec;
pub mod gc;
pub mod load;
pub mod net;
pub mod repair;
pub mod small_files;
pub mod store;
