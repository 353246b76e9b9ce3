# kiln %preun: stop and disable on erase ($1 = 0), not on upgrade. The state in
# /var/lib/kiln is kept (rpm has no purge).
if [ "$1" -eq 0 ]; then
        systemctl --no-reload disable --now kiln.socket kiln.service >/dev/null 2>&1 || :
fi
