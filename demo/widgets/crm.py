import requests

def get_sidebar_data(context):
    customer = context["customer"]

    if not customer or not customer.get("email"):
        return {"title": "CRM", "items": []}

    response = requests.get(
        "https://api.example.com/customers",
        params={"email": customer["email"]},
        headers={"Authorization": "Bearer API_KEY"},
        timeout=30,
    )

    if response.status_code != 200:
        return {"title": "CRM", "items": []}

    account = response.json()

    return {
        "title": "CRM",
        "items": [
            {
                "title": account["name"],
                "subtitle": account["email"],
                "badge": {
                    "text": account["tier"],
                    "color": "green" if account["tier"] == "Premium" else "gray",
                },
                "sections": [
                    {
                        "title": "Account details",
                        "fields": {
                            "Account ID": account["id"],
                            "Tier": account["tier"],
                            "Lifetime value": f"${account['ltv']}",
                            "Member since": account["createdAt"],
                        },
                    },
                ],
            },
        ],
    }
