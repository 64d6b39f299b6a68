"""A private moto server on a free port: prints PORT=<n>, serves until killed or its parent goes away.

SES and SNS tests read back what was sent from /moto-api/data.json, which dumps every model: on the
shared server, with every other suite's EC2 state in it, that takes minutes."""
import os
import signal
import sys
import threading
import time

signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM, signal.SIGINT])
signal.signal(signal.SIGTERM, signal.SIG_DFL)

from moto.server import ThreadedMotoServer

server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()


def watch_parent():
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


threading.Thread(target=watch_parent, daemon=True).start()
print("PORT=%d" % server.get_host_and_port()[1], flush=True)
while True:
    time.sleep(3600)
