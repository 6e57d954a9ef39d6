//! Argument readers beyond integers and strings (engine kinds `VIGIL_ARG_EXT_*`,
//! bpf/include/vigil_engine_args.h): fd, char_iovec, const_buf, char_buf with returnCopy.

use vigil_bpf::abi::*;
use vigil_policy::compile::ArgReader;

use super::process::char_buf_size;
use super::{Unsupported, unsupported};

/// Tetragon bounds a const_buf to 1023 bytes (`argm & 0x3ff`).
const CONST_BUF_MAX: usize = 1023;

/// Checks argument `a` (engine kind `kind`, from its type) at `slot` and fills what its
/// reader needs in `config`; returns the kind the engine runs (returnCopy changes it).
pub(crate) fn ext_reader(
    path: &str,
    a: &ArgReader,
    kind: u8,
    slot: usize,
    kernel: bool,
    config: &mut vigil_hook_cfg,
) -> Result<u8, Unsupported> {
    let k = u32::from(kind);
    if a.read_at_return && k != VIGIL_ARG_BUF {
        return Err(unsupported(
            path,
            format!(
                "returnCopy applies to char_buf arguments, not {}",
                a.arg_type
            ),
        ));
    }
    match k {
        VIGIL_ARG_BUF if a.read_at_return => {
            if kernel {
                return Err(unsupported(
                    path,
                    "returnCopy runs at the paired syscall exit: kernel-function hooks do not \
                     support it yet",
                ));
            }
            Ok(VIGIL_ARG_BUF_RET as u8)
        }
        VIGIL_ARG_BUF | VIGIL_ARG_IOVEC => {
            config.size_index[slot] = char_buf_size(path, a)?;
            Ok(kind)
        }
        VIGIL_ARG_CONST_BUF => match a.max_bytes {
            0 => Err(unsupported(
                path,
                "const_buf needs its size in bytes: `size`, or sizeArgIndex holding the count \
                 (Tetragon's reading)",
            )),
            n if n > CONST_BUF_MAX => Err(unsupported(
                path,
                format!("const_buf of {n} bytes: at most {CONST_BUF_MAX}"),
            )),
            n => {
                config.const_size[slot] = n as u16;
                Ok(kind)
            }
        },
        _ => Ok(kind),
    }
}

#[cfg(test)]
#[path = "readers_tests.rs"]
mod tests;
