"""The cloud link: MQTT contract, commands, the event stream and presence."""
