'use strict';
/*
 * The documented storefront checkout, driven through GetCandy's own published JavaScript client
 * (@getcandy/js-client, generated from GetCandy's OpenAPI description, axios underneath), the
 * way a GetCandy storefront calls it. Every storefront request goes through one of the client's
 * methods; only the admin set-up (a product to buy) and the read of our own OpenAPI document use
 * axios directly.
 *
 * Each answer is checked twice: against the client's own typings (the model interfaces in its
 * dist/models/*.d.ts: every field we send that the model declares must have the declared type)
 * and for what a storefront reads from it (the values the next step needs). The first mismatch
 * ends the run with exit code 1 and a message on stderr; the summary (JSON on stdout) says what
 * ran, which documented storefront routes the client has no method for, and where our answers
 * differ from the client's typings in ways recorded in README.md.
 *
 * Environment: GATEWAY_URL (the gateway's /api/v1 base, required), ADMIN_TOKEN (a bearer token
 * to create the product bought here; without it the first in-stock catalogue product is used).
 */

const fs = require('node:fs');
const path = require('node:path');
const axios = require('axios');
const candy = require('@getcandy/js-client');

const CLIENT_PACKAGE = require('@getcandy/js-client/package.json');
const CLIENT_DIST = path.join(path.dirname(require.resolve('@getcandy/js-client/package.json')), 'dist');
const UK_ADDRESS = {
  firstname: 'Ada',
  lastname: 'Lovelace',
  address: "12 St James's Square",
  city: 'London',
  county: 'Greater London',
  zip: 'SW1Y 4JH',
  country: 'United Kingdom',
  phone: '+44 20 7946 0000',
};

// Where our answer deliberately differs from the client's typings: the field, the type we send,
// and why. Each is recorded in README.md; a difference not listed here fails the run.
const KNOWN_DIFFERENCES = {
  'ProductVariant.tax': {
    sent: 'number',
    why: "the variant's tax rate in percent (API.md); upstream sent `tax` only as the `include=tax` relation",
  },
  'Address.country': {
    sent: 'string',
    why: "an order's addresses carry the country's name, as upstream's orders did (API.md)",
  },
};

// Fields the client's typings declare that no answer of this run has (README.md says more). A
// declared field missing from every answer and not listed here fails the run: a field a storefront
// may read went away. Relations (`include`) this checkout does not ask for are listed too.
const EXPECTED_ABSENT = {
  // One model in the typings for saved addresses and an order's details: an order's details never
  // had the saved-address fields, and say `zip`, not `postal_code`.
  Address: [
    '_default', 'delivery', 'delivery_instructions', 'last_used_at', 'meta', 'postal_code', 'salutation', 'shipping',
  ],
  // Upstream sent has_exclusions; `order` is a relation.
  Basket: ['has_exclusions', 'order'],
  // Relations.
  Order: ['basket', 'discounts', 'logs', 'user'],
  // Upstream sent both.
  Product: ['drafted_at', 'option_data'],
  // Upstream sent the prices, group_pricing and dimensions; the others are relations.
  ProductVariant: [
    'customer_pricing', 'depth', 'factor_tax', 'group_pricing', 'height', 'image', 'product', 'tiers',
    'total_tax', 'volume', 'width',
  ],
  // Upstream sent attribute_data only with `full_response`, else its fields flat, as we do.
  ShippingMethod: ['attribute_data'],
  // Upstream sent them.
  ShippingPrice: ['min_basket_tax'],
  Transaction: ['address_matched', 'cvc_matched', 'postcode_matched', 'threed_secure'],
  // Never sent by upstream either: no id, no success status, no pagination on these lists.
  PaymentProvider: ['id'],
  PaymentType: ['success_status'],
  PaymentTypeCollection: ['meta'],
  TransactionCollection: ['meta'],
};

class Mismatch extends Error {}

function expect(condition, message) {
  if (!condition) throw new Mismatch(message);
}

// ---------------------------------------------------------------------------------------------
// The client's own description of itself: its models (typings) and its routes (generated code).

function stripComments(text) {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
}

function loadModels() {
  const models = new Map();
  const dir = path.join(CLIENT_DIST, 'models');
  for (const file of fs.readdirSync(dir).filter((name) => name.endsWith('.d.ts'))) {
    const text = stripComments(fs.readFileSync(path.join(dir, file), 'utf8'));
    for (const [, name, body] of text.matchAll(/export interface (\w+) \{([^}]*)\}/g)) {
      const fields = new Map();
      for (const [, field, type] of body.matchAll(/^\s*'?(\w+)'?\??: (.+);\s*$/gm)) fields.set(field, type.trim());
      models.set(name, { fields });
    }
    for (const [, name, expr] of text.matchAll(/export declare type (\w+) = ([^;]+);/g)) {
      models.set(name, { alias: expr.trim() });
    }
  }
  return models;
}

// The route of every generated method, read from the client's request builders.
function loadRoutes() {
  const routes = new Map();
  const dir = path.join(CLIENT_DIST, 'api');
  const builder = new RegExp(
    String.raw`^ {8}(\w+): \([^)]*\) => __awaiter[\s\S]*?const localVarPath = ` +
      String.raw`\x60([^\x60]+)\x60[\s\S]*?\{ method: '(\w+)' \}`,
    'gm',
  );
  for (const file of fs.readdirSync(dir).filter((name) => name.endsWith('.js'))) {
    const text = fs.readFileSync(path.join(dir, file), 'utf8');
    const creators = text.slice(0, text.indexOf('ApiFp = function'));
    for (const [, method, route, verb] of creators.matchAll(builder)) routes.set(method, `${verb} ${route}`);
  }
  if (routes.size === 0) throw new Error(`no request builder found in ${dir}: another layout of the client?`);
  return routes;
}

// "PUT /basket-lines/{basketLineId}/add" and "PUT /basket-lines/{id}/add" name one route.
function routeKey(route) {
  return route.replace(/\{\w+\}/g, '{}');
}

// ---------------------------------------------------------------------------------------------
// Shapes: an answer against a type of the client's typings.

function splitTop(expr, separator) {
  const parts = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < expr.length; i += 1) {
    if (expr[i] === '<') depth += 1;
    else if (expr[i] === '>') depth -= 1;
    else if (depth === 0 && expr.startsWith(separator, i)) {
      parts.push(expr.slice(start, i).trim());
      start = i + separator.length;
    }
  }
  parts.push(expr.slice(start).trim());
  return parts;
}

class Shapes {
  constructor(models) {
    this.models = models;
    this.seen = new Map(); // model -> the declared fields some answer had
    this.extra = new Map(); // model -> fields we send that the client does not declare
    this.known = new Map(); // "Model.field" -> the known difference, when seen
  }

  fieldsOf(name) {
    const model = this.models.get(name);
    if (!model) throw new Error(`the client has no model ${name}`);
    if (model.fields) return model.fields;
    const merged = new Map();
    for (const part of splitTop(model.alias, '&')) for (const [k, v] of this.fieldsOf(part)) merged.set(k, v);
    return merged;
  }

  // Whether `value` has type `type`; a model's fields are checked (and any mismatch thrown) on the way.
  conforms(value, type, where) {
    // The typings were generated without nullability, and upstream sent null for unset fields.
    if (value === null) return true;
    const alternatives = splitTop(type, '|');
    if (alternatives.length > 1) return alternatives.some((alt) => this.quietly(value, alt, where));
    const array = /^Array<(.+)>$/.exec(type);
    if (array) return Array.isArray(value) && value.every((item, i) => this.conforms(item, array[1], `${where}[${i}]`));
    if (['string', 'number', 'boolean'].includes(type)) return typeof value === type;
    if (type === 'object') return typeof value === 'object';
    if (type === 'any') return true;
    if (/^'.*'$/.test(type)) return value === type.slice(1, -1);
    if (typeof value !== 'object' || Array.isArray(value)) return false;
    this.checkModel(value, type, where);
    return true;
  }

  quietly(value, type, where) {
    try {
      return this.conforms(value, type, where);
    } catch (error) {
      if (error instanceof Mismatch) return false;
      throw error;
    }
  }

  checkModel(value, name, where) {
    const fields = this.fieldsOf(name);
    if (!this.seen.has(name)) this.seen.set(name, new Set());
    for (const [field, item] of Object.entries(value)) {
      const declared = fields.get(field);
      if (declared === undefined) {
        this.note(this.extra, name, field);
        continue;
      }
      this.seen.get(name).add(field);
      if (this.conforms(item, declared, `${where}.${field}`)) continue;
      const known = KNOWN_DIFFERENCES[`${name}.${field}`];
      const sent = Array.isArray(item) ? 'array' : typeof item;
      expect(
        known && known.sent === sent,
        `${where}.${field}: the client's ${name}.${field} is ${declared}, ` +
          `we sent ${sent} ${JSON.stringify(item).slice(0, 200)}`,
      );
      this.known.set(`${name}.${field}`, { client: declared, ...known });
    }
  }

  note(map, name, field) {
    if (!map.has(name)) map.set(name, new Set());
    map.get(name).add(field);
  }

  check(body, name, where) {
    expect(body !== null && typeof body === 'object', `${where}: not a JSON object: ${JSON.stringify(body)}`);
    this.checkModel(body, name, where);
    return body;
  }

  // Per model: the fields the client declares that no answer had, and those it does not declare.
  report() {
    const absent = new Map();
    for (const [name, seen] of this.seen) {
      const missing = [...this.fieldsOf(name).keys()].filter((field) => !seen.has(field));
      if (missing.length) absent.set(name, missing);
    }
    const listed = (map) => Object.fromEntries([...map].sort().map(([k, v]) => [k, [...v].sort()]));
    return { known_differences: Object.fromEntries(this.known), absent: listed(absent), extra: listed(this.extra) };
  }
}

// ---------------------------------------------------------------------------------------------
// Calls through the client, recorded for the summary.

class Storefront {
  // With `accessToken`, a signed-in customer's storefront: the client never sends a token itself
  // (README.md), so it goes in baseOptions.headers, on every call.
  constructor(baseUrl, routes, shapes, accessToken) {
    const baseOptions = accessToken ? { headers: { Authorization: `Bearer ${accessToken}` } } : undefined;
    const configuration = new candy.Configuration({ basePath: baseUrl, baseOptions });
    this.apis = {
      products: new candy.ProductsApi(configuration),
      variants: new candy.ProductVariantsApi(configuration),
      baskets: new candy.BasketsApi(configuration),
      orders: new candy.OrdersApi(configuration),
      countries: new candy.CountriesApi(configuration),
      payments: new candy.PaymentsApi(configuration),
    };
    this.routes = routes;
    this.shapes = shapes;
    this.calls = [];
  }

  // One client method (`api.method`): a 2xx whose body has the client's `model` shape.
  async body(name, args, model, note) {
    const [api, method] = name.split('.');
    const route = this.routes.get(method);
    let response;
    try {
      response = await this.apis[api][method](...args);
    } catch (error) {
      if (!error.response) throw error;
      const body = JSON.stringify(error.response.data).slice(0, 300);
      throw new Mismatch(`${method} (${route}) answered HTTP ${error.response.status}: ${body}`);
    }
    this.calls.push({ method, route, status: response.status, ...(note ? { note } : {}) });
    if (model) this.shapes.check(response.data, model, method);
    return response.data;
  }

  // The same, for the resource itself: the body's `data`.
  async data(name, args, model, note) {
    const body = await this.body(name, args, model, note);
    return body && body.data;
  }

  // One client method expected to be refused with `status`, in GetCandy's error shape.
  async refused(name, args, status, note) {
    const [api, method] = name.split('.');
    const route = this.routes.get(method);
    try {
      await this.apis[api][method](...args);
    } catch (error) {
      if (!error.response) throw error;
      expect(error.response.status === status, `${method} (${route}): HTTP ${error.response.status}, not ${status}`);
      this.calls.push({ method, route, status, note });
      return this.shapes.check(error.response.data, 'ApiError', `${method} (HTTP ${status})`);
    }
    throw new Mismatch(`${method} (${route}) succeeded; expected HTTP ${status}`);
  }
}

// Options the generated methods pass to axios: what a storefront adds where a method has no
// parameter for it (GetCandy's `include` on most reads and writes, a body on two methods).
const including = (include) => ({ query: { include } });
const INCLUDE_VIA_OPTIONS = 'include through options.query: the method takes none';
const BODY_VIA_OPTIONS = 'body through options.data: the method takes none';
const PAGE_VIA_OPTIONS = 'page through options.query: the method takes none';

function isId(value) {
  return typeof value === 'string' && /^[a-z0-9]+$/.test(value);
}

function near(a, b) {
  return Math.abs(a - b) < 0.005;
}

// ---------------------------------------------------------------------------------------------
// The checkout, step by step.

// A product with a purchasable variant and 5 in stock: created as admin when a token is given
// (raw axios: the client's postProducts sends upstream's admin form, name, url, family_id... as
// query parameters, where our admin API takes a JSON body), else found in the catalogue.
async function productToBuy(shop, baseUrl, adminToken) {
  if (!adminToken) {
    const listing = await shop.data('products.getProducts', ['variants'], 'ProductCollection');
    const product = listing.find((p) => p.variants.data.some((v) => v.purchasable && v.inventory >= 5));
    expect(product, 'no product in the catalogue has a purchasable variant with 5 in stock');
    return product.id;
  }
  const sku = `JSC-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`.toUpperCase();
  const body = {
    name: `JS client ${sku}`,
    variants: [{ sku, price: '12.50', tax_rate_bp: 2000, inventory: 10, weight_grams: 500 }],
  };
  try {
    const headers = { Authorization: `Bearer ${adminToken}` };
    return (await axios.post(`${baseUrl}/products?include=variants`, body, { headers })).data.data.id;
  } catch (error) {
    // Only the status and body: the request (and its token) stays out of the output.
    if (!error.response) throw new Error(`set-up POST /products: ${error.code || error.message}`);
    const { status, data } = error.response;
    throw new Mismatch(`set-up POST /products answered HTTP ${status}: ${JSON.stringify(data)}`);
  }
}

async function browse(shop, productId) {
  const listing = await shop.body('products.getProducts', ['variants'], 'ProductCollection');
  expect(Array.isArray(listing.data) && Number.isInteger(listing.meta.total), 'getProducts: no data/meta.total');
  const product = await shop.data('products.getProductsProductId', [productId, 'variants'], 'ProductResponse');
  expect(product.id === productId, `getProductsProductId: asked for ${productId}, got ${product.id}`);
  // The client's Product does not declare `variants`: check each against its ProductVariant.
  product.variants.data.forEach((v, i) => shop.shapes.check(v, 'ProductVariant', `product.variants[${i}]`));
  const variant = product.variants.data.find((v) => v.purchasable && v.inventory >= 5);
  expect(variant, `product ${productId} has no purchasable variant with 5 in stock`);
  const same = await shop.data('variants.getProductsVariantsProductVariantId', [variant.id], 'ProductVariantResponse');
  expect(same.id === variant.id && same.sku === variant.sku, `getProductsVariantsProductVariantId: ${same.id}`);
  expect(typeof variant.unit_price === 'number' && typeof variant.unit_tax === 'number', 'variant prices');
  return variant;
}

// A basket of 3 of the variant, with the line and basket calls a storefront makes on the way.
async function fillBasket(shop, variant, summary) {
  const one = { variants: [{ id: variant.id, quantity: 1 }] };
  let basket = await shop.data('baskets.postBaskets', [one], 'BasketResponse');
  expect(isId(basket.id), `postBaskets: basket id ${basket.id}`);
  const args = [basket.id, including('lines.variant')];
  basket = await shop.data('baskets.getBasketsBasketId', args, 'BasketResponse', INCLUDE_VIA_OPTIONS);
  expect(basket.lines.data.length === 1, `getBasketsBasketId: ${basket.lines.data.length} lines, expected 1`);
  const line = basket.lines.data[0];
  expect(line.quantity === 1 && line.variant.data.id === variant.id, `basket line: ${JSON.stringify(line)}`);
  shop.shapes.check(line.variant.data, 'ProductVariant', 'basket.lines[0].variant');

  // Upstream sent a basket's lines only when asked (`include`), as we do.
  const quantityAfter = async (method, quantity, expected) => {
    const changed = await shop.data(`baskets.${method}`, [line.id, { quantity }, including('lines')], 'BasketResponse');
    const now = changed.lines.data.find((l) => l.id === line.id);
    expect(now && now.quantity === expected, `${method}: quantity ${now && now.quantity}, expected ${expected}`);
    return changed;
  };
  await quantityAfter('putBasketLinesBasketLineIdAdd', 2, 3);
  await quantityAfter('putBasketLinesBasketLineIdRemove', 1, 2);
  basket = await quantityAfter('putBasketLinesBasketLineId', 3, 3);
  expect(near(basket.sub_total, 3 * variant.unit_price), `sub_total ${basket.sub_total} for 3 x ${variant.unit_price}`);
  const total = basket.sub_total + basket.tax_total - basket.discount_total;
  expect(near(basket.total, total), `basket totals do not add up: ${JSON.stringify(basket)}`);

  const note = { key: 'gift_note', value: 'Happy birthday' };
  basket = await shop.data('baskets.postBasketsBasketIdMeta', [basket.id, note], 'BasketResponse');
  expect(basket.meta.gift_note === note.value, `postBasketsBasketIdMeta: meta ${JSON.stringify(basket.meta)}`);
  summary.put_basket_without_body = await bareBasketUpdate(shop, basket.id);
  const currency = { data: { currency: 'GBP' } };
  basket = await shop.data('baskets.putBasketsBasketId', [basket.id, currency], 'BasketResponse', BODY_VIA_OPTIONS);
  expect(basket.currency === 'GBP' && basket.meta.gift_note === note.value, `putBasketsBasketId: ${basket.currency}`);
  return basket;
}

// The client's putBasketsBasketId sends no body; upstream never served PUT /baskets/{id}, we do
// (to change the currency), and a request without a body changes nothing: the basket as it is.
async function bareBasketUpdate(shop, basketId) {
  const response = await shop.apis.baskets.putBasketsBasketId(basketId);
  shop.shapes.check(response.data, 'BasketResponse', 'putBasketsBasketId (no body)');
  expect(response.data.data.id === basketId, `putBasketsBasketId, no body: ${JSON.stringify(response.data)}`);
  return { status: response.status };
}

// A second basket, without an order: its line deleted, then the basket itself; then it is gone.
// deleteBasketLines takes no body, though upstream (and we) need `lines`; its typings declare the
// answer as {data: {data: Basket}} where upstream sent {data: Basket}, as we do.
async function discardBasket(shop, variant) {
  const body = { variants: [{ id: variant.id, quantity: 1 }] };
  let spare = await shop.data('baskets.postBasketLines', [body, including('lines')], 'BasketResponse');
  expect(spare.lines.data.length === 1, `postBasketLines: ${JSON.stringify(spare)}`);
  const lines = { data: { lines: spare.lines.data.map((l) => ({ id: l.id })) }, ...including('lines') };
  spare = await shop.data('baskets.deleteBasketLines', [lines], 'BasketResponse', BODY_VIA_OPTIONS);
  expect(spare.lines.data.length === 0 && spare.total === 0, `deleteBasketLines: ${JSON.stringify(spare)}`);
  await shop.data('baskets.deleteBasketsBasketId', [spare.id], null);
  const gone = await shop.refused('baskets.getBasketsBasketId', [spare.id], 404, 'the deleted basket');
  expect(gone.error.http_code === 404, `deleted basket: ${JSON.stringify(gone)}`);
}

// The United Kingdom, as an address form finds it. Upstream's list is paginated (50 a page, at
// most 200 with per_page): walk the pages.
async function unitedKingdom(shop) {
  const countries = [];
  for (let page = 1, last = 1; page <= last; page += 1) {
    const args = [undefined, 200, { query: { page } }];
    const listed = await shop.body('countries.getCountries', args, 'CountryCollection', PAGE_VIA_OPTIONS);
    expect(Number.isInteger(listed.meta.last_page), `getCountries: meta ${JSON.stringify(listed.meta)}`);
    countries.push(...listed.data);
    last = listed.meta.last_page;
  }
  const uk = countries.find((c) => c.iso_a_2 === 'GB');
  expect(uk && uk.name === 'United Kingdom', 'getCountries: no United Kingdom (GB)');
  const country = await shop.data('countries.getCountriesCountryId', [uk.id], 'CountryResponse');
  expect(country.id === uk.id && country.iso_a_3 === 'GBR', `getCountriesCountryId: ${JSON.stringify(country)}`);
  return country;
}

// The order from the basket, its addresses, contact and the cheapest shipping price.
async function prepareOrder(shop, basket, address) {
  let order = await shop.data('orders.postOrders', [{ basket_id: basket.id }], 'OrderResponse');
  expect(isId(order.id) && order.status === 'awaiting-payment', `postOrders: ${JSON.stringify(order).slice(0, 200)}`);
  const id = order.id;
  order = await shop.data('orders.putOrdersIdShippingAddress', [id, address], 'OrderResponse');
  expect(order.shipping_details.zip === address.zip, `shipping_details ${JSON.stringify(order.shipping_details)}`);
  order = await shop.data('orders.putOrdersOrderIdBillingAddress', [id, address], 'OrderResponse');
  expect(order.billing_details.lastname === address.lastname, `billing_details: ${order.billing_details.lastname}`);
  const contact = { email: `js-client-${Date.now()}@example.com`, phone: address.phone };
  order = await shop.data('orders.putOrdersIdContact', [id, contact], 'OrderResponse');
  expect(order.contact_details.email === contact.email, `contact_details ${JSON.stringify(order.contact_details)}`);

  const prices = await shop.data('orders.getOrdersIdShippingMethods', [id], 'ShippingPriceCollection');
  expect(prices.length > 0, 'getOrdersIdShippingMethods: no shipping price applies to a UK order');
  for (const price of prices) {
    expect(isId(price.id) && Number.isInteger(price.rate), `shipping price: ${JSON.stringify(price)}`);
    expect(typeof price.method.data.name === 'string', `shipping price without method.data.name: ${price.id}`);
  }
  const cheapest = prices.reduce((a, b) => (b.rate < a.rate ? b : a));
  const choice = { price_id: cheapest.id };
  order = await shop.data('orders.putOrdersIdShippingCost', [id, undefined, choice], 'OrderResponse');
  expect(order.shipping_method === cheapest.method.data.name, `shipping_method ${order.shipping_method}`);
  return id;
}

// The provider's client token and the payment types, then the sandbox's valid nonce.
async function pay(shop, orderId) {
  const provider = await shop.data('payments.getPaymentsProvider', [], 'PaymentProviderResponse');
  expect(typeof provider.client_token === 'string' && typeof provider.exires_at === 'string', 'getPaymentsProvider');
  const sandbox = await shop.data('payments.getPaymentProvider', ['sandbox', orderId], 'PaymentProviderResponse');
  expect(typeof sandbox.client_token === 'string' && sandbox.client_token !== '', 'getPaymentProvider: client_token');
  const types = await shop.data('payments.getPaymentsTypes', [], 'PaymentTypeCollection');
  expect(types.some((t) => t.handle === 'offline') && types.every((t) => isId(t.id)), `types ${JSON.stringify(types)}`);

  const payment = { order_id: orderId, payment_token: 'fake-valid-nonce' };
  let order = await shop.data('orders.postOrdersProcess', [payment], 'OrderResponse');
  // The answer may come before the saga has an outcome: then read the order until it is placed.
  const deadline = Date.now() + 30000;
  while (!order.placed_at) {
    expect(order.status !== 'failed', `postOrdersProcess: the order failed: ${JSON.stringify(order).slice(0, 300)}`);
    expect(Date.now() < deadline, `the order was not placed within 30 s (status ${order.status})`);
    await new Promise((resolve) => setTimeout(resolve, 200));
    order = await shop.data('orders.getOrdersOrderId', [orderId], 'OrderResponse');
  }
}

// The placed order as a confirmation page reads it, its invoice, and the order types.
async function confirm(shop, orderId, variant) {
  const include = including('lines,shipping,transactions');
  const order = await shop.data('orders.getOrdersOrderId', [orderId, include], 'OrderResponse', INCLUDE_VIA_OPTIONS);
  expect(order.status === 'payment-received', `order status ${order.status}, expected payment-received`);
  expect(/^\S*\d{4}-\d{2}-\d{4}$/.test(order.reference), `reference ${order.reference}`);
  expect(order.invoice_reference === `#INV-${order.reference}`, `invoice_reference ${order.invoice_reference}`);
  expect(order.display_id.startsWith('#'), `display_id ${order.display_id}`);
  const goods = order.lines.data.filter((l) => !l.is_shipping);
  const expected = [{ sku: variant.sku, quantity: 3, unit_price: Math.round(variant.unit_price * 100) }];
  const got = goods.map((l) => ({ sku: l.sku, quantity: l.quantity, unit_price: l.unit_price }));
  const [gotText, expectedText] = [JSON.stringify(got), JSON.stringify(expected)];
  expect(gotText === expectedText, `order lines ${gotText}, expected ${expectedText}`);
  expect(order.sub_total === 3 * expected[0].unit_price, `sub_total ${order.sub_total}`);
  expect(order.order_total === order.sub_total + order.delivery_total + order.tax_total, 'order_total is not the sum');
  expect(order.shipping.data.is_shipping === true, `order.shipping ${JSON.stringify(order.shipping)}`);
  const captured = order.transactions.data.filter((t) => t.success && !t.refund);
  expect(captured.length === 1 && captured[0].amount === order.order_total, `transactions ${JSON.stringify(captured)}`);
  expect(Array.isArray(order.meta), `order meta ${JSON.stringify(order.meta)} is not an array`);

  const invoice = await shop.data('orders.getOrdersIdInvoice', [orderId], 'InvoiceResponse');
  expect(invoice.encoding === 'base64', `invoice encoding ${invoice.encoding}`);
  expect(Buffer.from(invoice.content, 'base64').subarray(0, 5).toString('latin1') === '%PDF-', 'invoice is not a PDF');
  const types = await shop.data('orders.getOrdersTypes', [], 'OrderTypeCollection');
  const labelled = types.length > 0 && types.every((t) => typeof t.label === 'string');
  expect(labelled, `getOrdersTypes: ${JSON.stringify(types)}`);
  return order;
}

// Set-up outside the client, its failure reported by status and body only (never the request,
// which carries a password or a token).
async function setUp(route, request) {
  try {
    return await request();
  } catch (error) {
    if (!error.response) throw new Error(`set-up ${route}: ${error.code || error.message}`);
    const { status, data } = error.response;
    throw new Mismatch(`set-up ${route} answered HTTP ${status}: ${JSON.stringify(data)}`);
  }
}

// A new customer, signed in: raw axios, as the client's postCustomers sends upstream's fields as
// query parameters (our POST /customers takes a JSON body) and it has no method for the OAuth2
// token endpoint. The access token.
async function signUp(baseUrl) {
  const suffix = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 10)}`;
  const account = { firstname: 'Ada', lastname: 'Lovelace', email: `js-client-${suffix}@example.com` };
  account.password = `Js-${suffix}-${Math.random().toString(36).slice(2, 10)}`;
  await setUp('POST /customers', () => axios.post(`${baseUrl}/customers`, account));
  const grant = new URLSearchParams({ grant_type: 'password', username: account.email, password: account.password });
  const tokens = (await setUp('POST /oauth/token', () => axios.post(`${baseUrl}/oauth/token`, grant))).data;
  expect(tokens.token_type === 'Bearer' && typeof tokens.access_token === 'string', 'POST /oauth/token: no token');
  return tokens.access_token;
}

// A customer who shopped as a guest signs in: claims the basket made before signing in, merges a
// second guest basket into it (resolve), checks it out with the token on every call, and finds the
// order first in their order history; to a guest holding its id the order is unknown.
async function signedInCheckout(guest, baseUrl, variant, address) {
  const shop = new Storefront(baseUrl, guest.routes, guest.shapes, await signUp(baseUrl));
  shop.calls = guest.calls;
  const one = { variants: [{ id: variant.id, quantity: 1 }] };
  const before = await guest.data('baskets.postBaskets', [one], 'BasketResponse');
  const claimed = await shop.data('baskets.postBasketsBasketIdClaim', [before.id], 'BasketResponse');
  expect(claimed.id === before.id, `postBasketsBasketIdClaim: ${claimed.id}, expected ${before.id}`);
  const lines = including('lines');
  let current = await shop.data('baskets.getBasketsCurrent', [lines], 'BasketResponse', INCLUDE_VIA_OPTIONS);
  expect(current.id === before.id, `getBasketsCurrent: ${current.id}, expected the claimed ${before.id}`);
  const other = await guest.data('baskets.postBaskets', [one], 'BasketResponse');
  const resolve = [{ basket_id: other.id }, lines];
  current = await shop.data('baskets.postBasketsResolve', resolve, 'BasketResponse', INCLUDE_VIA_OPTIONS);
  const merged = current.lines.data.map((l) => l.quantity);
  expect(current.id === before.id && `${merged}` === '2', `postBasketsResolve: ${current.id}, quantities ${merged}`);

  const orderId = await prepareOrder(shop, current, address);
  await pay(shop, orderId);
  const history = await shop.body('orders.getOrders', [], 'OrderCollection');
  expect(history.data.length > 0 && history.data[0].id === orderId, `getOrders: ${history.data.map((o) => o.id)}`);
  await guest.refused('orders.getOrdersOrderId', [orderId], 404, "a signed-in customer's order, to a guest");
  return { order_id: orderId, basket_id: current.id, orders_listed: history.meta.total };
}

async function checkout(baseUrl, adminToken) {
  const routes = loadRoutes();
  const shapes = new Shapes(loadModels());
  const shop = new Storefront(baseUrl, routes, shapes);
  const summary = { client: `${CLIENT_PACKAGE.name}@${CLIENT_PACKAGE.version}`, gateway: baseUrl };

  const variant = await browse(shop, await productToBuy(shop, baseUrl, adminToken));
  const basket = await fillBasket(shop, variant, summary);
  await discardBasket(shop, variant);
  const country = await unitedKingdom(shop);
  const orderId = await prepareOrder(shop, basket, { ...UK_ADDRESS, country: country.name });
  await pay(shop, orderId);
  const order = await confirm(shop, orderId, variant);
  // The placed order's basket is used: upstream refused a second order from it, and so do we.
  await shop.refused('orders.postOrders', [{ basket_id: basket.id }], 403, "the placed order's basket");
  summary.signed_in = await signedInCheckout(shop, baseUrl, variant, { ...UK_ADDRESS, country: country.name });

  const report = shapes.report();
  for (const [name, fields] of Object.entries(report.absent)) {
    const lost = fields.filter((field) => !(EXPECTED_ABSENT[name] || []).includes(field));
    expect(lost.length === 0, `no answer had ${lost.map((f) => `${name}.${f}`).join(', ')}, which the client declares`);
  }
  summary.order = { id: orderId, reference: order.reference, status: order.status, order_total: order.order_total };
  summary.calls = shop.calls;
  summary.client_methods_used = [...new Set(shop.calls.map((c) => c.method))].sort();
  summary.set_up_without_client = [
    ...(adminToken ? ['POST /products (admin: the product bought here)'] : []),
    'POST /customers, POST /oauth/token (the signed-in customer)',
  ];
  summary.served_without_client_method = await servedWithoutClientMethod(baseUrl, routes);
  return Object.assign(summary, report);
}

// Our guest storefront routes (from our own OpenAPI document) that no client method calls.
async function servedWithoutClientMethod(baseUrl, routes) {
  const document = (await axios.get(`${baseUrl}/openapi.json`)).data;
  const covered = new Set([...routes.values()].map(routeKey));
  const missing = [];
  for (const [route, operations] of Object.entries(document.paths)) {
    for (const [verb, operation] of Object.entries(operations)) {
      // A guest's routes that also serve a customer (`x-commerce-customer: "optional"`) are a guest's.
      const signedInOnly = operation['x-commerce-customer'] === true;
      if (operation['x-commerce-admin'] || signedInOnly || route === '/openapi.json') continue;
      const name = `${verb.toUpperCase()} ${route}`;
      if (!covered.has(routeKey(name))) missing.push(name);
    }
  }
  return missing.sort();
}

async function main() {
  const baseUrl = (process.env.GATEWAY_URL || '').replace(/\/+$/, '');
  if (!baseUrl) {
    process.stderr.write('GATEWAY_URL (the gateway base, e.g. http://localhost:8000/api/v1) is required\n');
    return 2;
  }
  try {
    const summary = await checkout(baseUrl, process.env.ADMIN_TOKEN || '');
    process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    return 0;
  } catch (error) {
    if (!(error instanceof Mismatch)) throw error;
    process.stderr.write(`MISMATCH: ${error.message}\n`);
    return 1;
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    process.stderr.write(`ERROR: ${error && error.stack ? error.stack : error}\n`);
    process.exitCode = 1;
  },
);
