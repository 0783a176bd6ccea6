#!/bin/sh
# Entry point of the kbx test binfmt image: what `tonistiigi/binfmt --install all` does, for the
# one emulator this image carries (Debian's qemu-aarch64-static). The handler is registered
# host-wide with the F flag, so the kernel opens the interpreter now and it works inside every
# container. Run privileged (the `qemu.install=true` init container is).
set -e
case " $* " in
    *" --install "*) ;;
    *) echo "usage: binfmt --install all|arm64" >&2; exit 2 ;;
esac
dir=/proc/sys/fs/binfmt_misc
[ -e "$dir/register" ] || mount -t binfmt_misc binfmt_misc "$dir"
if [ ! -e "$dir/kbx-qemu-aarch64" ]; then
    printf '%s' ':kbx-qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' \
        > "$dir/register"
fi
echo "installed emulators: linux/arm64"
