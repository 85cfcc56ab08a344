import requests

def get_sidebar_data(context):
    customer = context["customer"]

    if not customer or not customer.get("email"):
        return {"title": "Warranties", "items": []}

    response = requests.get(
        "https://api.example.com/warranties",
        params={"email": customer["email"]},
        headers={"Authorization": "Bearer API_KEY"},
        timeout=30,
    )

    if response.status_code != 200:
        return {"title": "Warranties", "items": []}

    warranties = response.json()

    items = []
    for w in warranties[:5]:
        items.append({
            "title": w["productName"],
            "subtitle": f"Purchased {w['purchaseDate']}",
            "badge": {
                "text": "Active" if w["isActive"] else "Expired",
                "color": "green" if w["isActive"] else "gray",
            },
            "sections": [
                {
                    "title": "Warranty details",
                    "fields": {
                        "Type": w["warrantyType"],
                        "Expires": w["expiresAt"],
                        "Serial number": w.get("serialNumber", "—"),
                    },
                },
            ],
        })

    return {"title": "Warranties", "items": items}
