//! Fuzz the XML reader driving the metadata writer into a small in-memory
//! device: any input must end in Ok or a clean error, never a panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thintools::pdata::io::MemDevice;
use thintools::thin::ir::metadata_writer::{Overrides, ThinWriter};
use thintools::thin::ir::xml::read::read_xml;

fuzz_target!(|data: &[u8]| {
    let dev = MemDevice::new(256);
    let mut writer = ThinWriter::new(&dev, Overrides::default());
    let _ = read_xml(data, &mut writer);
});
