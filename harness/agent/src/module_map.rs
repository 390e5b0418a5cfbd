//! Where a loaded module lies in memory: its sections' addresses from `/sys/module/NAME/sections`,
//! their sizes and its functions from the `.ko` itself. Read while the module is loaded, so that
//! an address printed after its unload (a bare `0xffffffffc0201234` in a trace) can still be put
//! to the module and the function.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;

use kmodlab_protocol::{AddressRange, ModuleMap};
use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

/// Reads the map of module `name`, loaded from `ko_path`.
pub fn read(name: &str, ko_path: &str) -> Result<ModuleMap, String> {
    let addresses = section_addresses(name)?;
    let data = std::fs::read(ko_path).map_err(|e| format!("read {ko_path}: {e}"))?;
    map_from_elf(&data, &addresses).map_err(|e| format!("{ko_path}: {e}"))
}

/// Section name to load address, as the kernel shows them to root.
fn section_addresses(name: &str) -> Result<HashMap<String, u64>, String> {
    let dir = format!("/sys/module/{name}/sections");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("list {dir}: {e}"))?;
    let mut addresses = HashMap::new();
    for entry in entries.flatten() {
        let section = entry.file_name().to_string_lossy().into_owned();
        // Each file must be read whole in one read: the kernel refuses a read at an offset.
        let mut buf = [0u8; 64];
        let read = File::open(entry.path()).and_then(|mut f| f.read(&mut buf));
        let Ok(len) = read else { continue };
        let text = String::from_utf8_lossy(&buf[..len]);
        if let Some(address) = parse_address(&text) {
            addresses.insert(section, address);
        }
    }
    Ok(addresses)
}

/// `0xffffffffc0201000\n`; zero (what an unprivileged reader sees) is no address.
fn parse_address(text: &str) -> Option<u64> {
    let hex = text.trim().strip_prefix("0x")?;
    u64::from_str_radix(hex, 16).ok().filter(|&a| a != 0)
}

/// The sections the kernel placed (those in `addresses`) with their sizes, and every function
/// defined in one of them.
fn map_from_elf(data: &[u8], addresses: &HashMap<String, u64>) -> Result<ModuleMap, String> {
    let file = object::File::parse(data).map_err(|e| format!("not an ELF object: {e}"))?;
    let mut map = ModuleMap::default();
    let mut bases = HashMap::new();
    for section in file.sections() {
        let Ok(name) = section.name() else { continue };
        // The kernel lists only the sections it allocated.
        let Some(&start) = addresses.get(name) else {
            continue;
        };
        if section.size() == 0 {
            continue;
        }
        bases.insert(section.index(), start);
        map.sections.push(AddressRange {
            name: name.to_string(),
            start,
            size: section.size(),
        });
    }
    for symbol in file.symbols() {
        if symbol.kind() != SymbolKind::Text || symbol.size() == 0 {
            continue;
        }
        let Some(base) = symbol.section_index().and_then(|i| bases.get(&i)) else {
            continue;
        };
        let Ok(name) = symbol.name() else { continue };
        map.functions.push(AddressRange {
            name: name.to_string(),
            start: base.wrapping_add(symbol.address()),
            size: symbol.size(),
        });
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_file_reads_as_an_address() {
        assert_eq!(
            parse_address("0xffffffffc0201000\n"),
            Some(0xffff_ffff_c020_1000)
        );
        assert_eq!(parse_address("0x0000000000000000\n"), None);
        assert_eq!(parse_address("garbage"), None);
    }

    /// A relocatable object, as a `.ko` is: functions are placed at their section's address plus
    /// their offset in it, and sections the kernel did not place are left out.
    #[test]
    fn functions_are_placed_relative_to_their_section() {
        let dir = std::env::temp_dir().join(format!("kmodlab-map-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let source = dir.join("m.c");
        std::fs::write(
            &source,
            "int first(int a) { return a * 3; }\nint second(int a) { return first(a) + 1; }\n\
             __attribute__((section(\".init.text\"))) int setup(void) { return second(2); }\n",
        )
        .expect("write source");
        let object = dir.join("m.o");
        let built = std::process::Command::new("cc")
            .args(["-c", "-O0", "-fno-pic", "-o"])
            .arg(&object)
            .arg(&source)
            .status();
        let data = std::fs::read(&object);
        let _ = std::fs::remove_dir_all(&dir);
        let (Ok(status), Ok(data)) = (built, data) else {
            panic!("cc is needed for this test");
        };
        assert!(status.success());
        let text = 0xffff_ffff_c000_0000u64;
        let init = 0xffff_ffff_c000_8000u64;
        let addresses = HashMap::from([
            (".text".to_string(), text),
            (".init.text".to_string(), init),
        ]);
        let map = map_from_elf(&data, &addresses).expect("parses");
        let names: Vec<&str> = map.sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, [".text", ".init.text"]);
        assert!(map.contains(text) && map.contains(init));
        assert_eq!(map.function_at(text), Some(("first", 0)));
        let second = map
            .functions
            .iter()
            .find(|f| f.name == "second")
            .expect("second");
        assert!(second.start > text && map.contains(second.start));
        assert_eq!(map.function_at(init + 4), Some(("setup", 4)));
    }
}
