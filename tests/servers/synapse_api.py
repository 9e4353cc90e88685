# The Synapse client calls the matrix tests need: `setup` logs the bot in and makes a
# room; `messages TOKEN ROOM` lists what was posted there.
import json, sys, urllib.request
url, action = sys.argv[1], sys.argv[2]
def call(method, path, body=None, token=None):
    req = urllib.request.Request(url + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json", **({"authorization": "Bearer " + token} if token else {})})
    return json.loads(urllib.request.urlopen(req).read())
if action == "setup":
    login = call("POST", "/_matrix/client/v3/login", {"type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "backupbot"}, "password": "bot-password-1"})
    room = call("POST", "/_matrix/client/v3/createRoom", {"name": "backups"}, login["access_token"])
    print(json.dumps({"token": login["access_token"], "room": room["room_id"]}))
else:
    token, room = sys.argv[3], sys.argv[4]
    msgs = call("GET", "/_matrix/client/v3/rooms/" + urllib.parse.quote(room) + "/messages?dir=b&limit=20", None, token)
    print(json.dumps([e["content"]["body"] for e in msgs["chunk"] if e["type"] == "m.room.message"]))
