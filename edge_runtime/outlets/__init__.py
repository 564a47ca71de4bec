"""Outlets of the gateway: MQTT (:mod:`.mqtt`) and Lab Streaming Layer (:mod:`.lsl`), each loaded only when asked for."""
