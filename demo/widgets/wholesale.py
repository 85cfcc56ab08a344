import requests

def get_sidebar_data(context):
    customer = context["customer"]

    if not customer or not customer.get("email"):
        return {"title": "Wholesale", "items": []}

    response = requests.get(
        "https://api.example.com/wholesale/accounts",
        params={"email": customer["email"]},
        headers={"Authorization": "Bearer API_KEY"},
        timeout=30,
    )

    if response.status_code != 200:
        return {"title": "Wholesale", "items": []}

    account = response.json()

    return {
        "title": "Wholesale",
        "items": [
            {
                "title": account["companyName"],
                "badge": {
                    "text": account["status"],
                    "color": "green" if account["status"] == "Active" else "red",
                },
                "actions": [
                    {"label": "View in ERP", "link": f"https://erp.example.com/accounts/{account['id']}"},
                ],
                "sections": [
                    {
                        "title": "Account",
                        "fields": {
                            "Pricing tier": account["pricingTier"],
                            "Credit limit": f"${account['creditLimit']}",
                            "Outstanding balance": f"${account['balance']}",
                            "Payment terms": account["paymentTerms"],
                        },
                    },
                    {
                        "title": "Contact",
                        "fields": {
                            "Account manager": account.get("accountManager", "—"),
                            "Phone": account.get("phone", "—"),
                        },
                    },
                ],
            },
        ],
    }
