# kiln %postun: after an upgrade ($1 >= 1) restart the running daemon on the new files.
systemctl daemon-reload >/dev/null 2>&1 || :
if [ "$1" -ge 1 ]; then
        systemctl try-restart kiln.service >/dev/null 2>&1 || :
fi
