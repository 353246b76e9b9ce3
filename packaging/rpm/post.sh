# kiln %post: the user and directories; on a first install ($1 = 1) enable kiln.service
# through the preset (50-kiln.preset) and start it. Without a running systemd (an
# image build, a container) the systemctl calls fail harmlessly.
systemd-sysusers /usr/lib/sysusers.d/kiln.conf || :
systemd-tmpfiles --create /usr/lib/tmpfiles.d/kiln.conf || :
if [ "$1" -eq 1 ]; then
        systemctl --no-reload preset kiln.service kiln.socket >/dev/null 2>&1 || :
        systemctl daemon-reload >/dev/null 2>&1 || :
        if systemctl -q is-enabled kiln.service; then
                systemctl start kiln.service >/dev/null 2>&1 || :
        fi
fi
