//! Network addresses as the hub's limits see them: which connections count as "one
//! host" and which as "one network" ([`ip`]).

pub(crate) mod ip;
