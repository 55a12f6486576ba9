"""locker-ctl: the operator's side of the MQTT contract."""
