import requests

def get_sidebar_data(context):
    customer = context["customer"]

    if not customer or not customer.get("email"):
        return {"title": "Subscriptions", "items": []}

    response = requests.get(
        "https://api.example.com/subscriptions",
        params={"email": customer["email"]},
        timeout=30,
    )

    if response.status_code != 200:
        return {"title": "Subscriptions", "items": []}

    subs = response.json()

    items = []
    for sub in subs:
        items.append({
            "title": sub["planName"],
            "badge": {
                "text": sub["status"].capitalize(),
                "color": "green" if sub["status"] == "active" else "yellow",
            },
            "sections": [
                {
                    "title": "Plan",
                    "fields": {
                        "Price": f"${sub['price']}/mo",
                        "Next billing": sub["nextBillingDate"],
                        "Started": sub["startDate"],
                    },
                },
                {
                    "title": "Usage",
                    "collapsible": True,
                    "fields": {
                        "API calls": f"{sub['usage']['apiCalls']} / {sub['usage']['limit']}",
                        "Storage": sub['usage']['storage'],
                    },
                },
            ],
        })

    return {"title": "Subscriptions", "items": items}
