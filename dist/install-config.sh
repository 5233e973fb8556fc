#!/bin/sh
# meson install script: install the example configuration as SYSCONFDIR/smtpgate/smtpgate.conf
# unless one exists (an administrator's file is never overwritten); the example itself is
# always installed as smtpgate.conf.example next to it.
set -eu
dir="${DESTDIR:-}$1/smtpgate"
mkdir -p "$dir"
if [ ! -e "$dir/smtpgate.conf" ]; then
    cp "$dir/smtpgate.conf.example" "$dir/smtpgate.conf"
    chmod 644 "$dir/smtpgate.conf"
    echo "Installing $dir/smtpgate.conf"
else
    echo "Keeping $dir/smtpgate.conf (the new example is $dir/smtpgate.conf.example)"
fi
